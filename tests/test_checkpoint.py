"""Checkpoints in-process on synthetic data: an asynchronous save taken while training goes on restores bitwise on
8, 4, 2 and 1 devices; damaged or unfinished checkpoints are reported and skipped; keep-last-K plus the best by an
eval metric; a checkpoint of another model is an error."""

import os
from pathlib import Path

import jax
import numpy as np
import pytest

from bert_jax import checkpoint, config as config_lib
from bert_jax.errors import UserError
from bert_jax.train import batches as batches_lib
from bert_jax.train.trainer import Trainer

# A failed Orbax restore of a damaged checkpoint leaves reads that later report to its closed event loop.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

SMALL = ["data.source=synthetic", "data.seq_len=32", "objective.max_predictions=5", "model.vocab_size=512",
         "train.batch_size=8", "eval.batch_size=8"]


def small_config(*overrides: str):
  return config_lib.load_config("bert_tiny", SMALL + list(overrides))


def leaves(tree) -> list[np.ndarray]:
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


@pytest.fixture(scope="module")
def fresh():
  """A trainer on 8 devices and its initial state (compiled once for the module)."""
  trainer = Trainer(small_config())
  return trainer, trainer.init_state()


def save_steps(workdir: Path, trainer, state, steps, metrics=None, config=None) -> None:
  checkpoints = checkpoint.Checkpoints(workdir, config or trainer.config)
  for step in steps:
    batches = trainer.batches(str(workdir), step)
    checkpoints.save(step, state.replace(step=jax.numpy.asarray(step, jax.numpy.int32)), batches,
                     None if metrics is None else metrics[step])
  checkpoints.close()


def test_async_save_on_fsdp_mesh_restores_exactly_on_fewer_devices(tmp_path):
  trainer = Trainer(small_config("mesh.data=1", "mesh.fsdp=8"))
  state, batches = trainer.init_state(), trainer.batches(str(tmp_path), 0)
  next(batches)
  snapshot = [np.array(x) for x in leaves(state)]
  checkpoints = checkpoint.Checkpoints(tmp_path, trainer.config)
  checkpoints.save(1, state, batches)
  # Like a train step, overwrite the saved buffers in place while the save runs.
  state = jax.jit(lambda s: jax.tree_util.tree_map(lambda x: x + 1, s), donate_argnums=0)(state)
  checkpoints.close()
  assert int(state.step) == 1
  for devices in (4, 2, 1):
    other = Trainer(small_config(), jax.devices()[:devices])
    restored, restored_batches = checkpoint.Checkpoints(tmp_path, other.config).restore_or_init(other, tmp_path)
    assert restored_batches.step == 1
    assert all(np.array_equal(a, b) for a, b in zip(snapshot, leaves(restored)))
    kernel = restored.params["encoder"]["embeddings"]["word_embeddings"]["embedding"]
    assert len(kernel.sharding.device_set) == devices


def largest_file(directory: Path) -> Path:
  return max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_damaged_latest_checkpoint_is_reported_and_skipped(fresh, tmp_path, capsys, damage):
  trainer, state = fresh
  save_steps(tmp_path, trainer, state, [1, 2])
  if damage == "missing":
    (tmp_path / "checkpoints" / "2" / "params" / "manifest.ocdbt").unlink()
  else:
    victim = largest_file(tmp_path / "checkpoints" / "2" / "train_state")
    os.truncate(victim, victim.stat().st_size // 2)
  unfinished = tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-1234"
  (unfinished / "params").mkdir(parents=True)
  checkpoints = checkpoint.Checkpoints(tmp_path, trainer.config)
  restored, batches = checkpoints.restore_or_init(trainer, tmp_path)
  err = capsys.readouterr().err
  assert f"ignoring {unfinished}: a save that never finished" in err
  assert "checkpoint 2 in" in err and "is damaged" in err
  assert "resuming from checkpoint 1" in err
  assert int(restored.step) == 1 and batches.step == 1
  assert (tmp_path / "damaged_checkpoints" / "2" / "train_state").is_dir()
  assert checkpoints.steps() == [1] and not unfinished.exists()
  assert checkpoints.save(2, restored, batches)  # the damaged step no longer blocks saving it again
  checkpoints.close()
  assert checkpoint.Checkpoints(tmp_path, trainer.config).steps() == [1, 2]


@pytest.mark.parametrize("manifest", [True, False])
def test_no_restorable_checkpoint_is_an_error_and_moves_nothing(fresh, tmp_path, manifest):
  trainer, state = fresh
  save_steps(tmp_path, trainer, state, [1])
  (tmp_path / "checkpoints" / "1" / "data" / batches_lib.SYNTHETIC_POSITION).unlink()
  if not manifest:  # a crash between the commit and the manifest: the failed read itself tells
    (tmp_path / "checkpoints" / "1" / checkpoint.MANIFEST).unlink()
  cause = r".*/1/data/synthetic.json is missing\)" if manifest else r"FileNotFoundError"
  with pytest.raises(UserError, match=rf"no checkpoint in .* could be restored \(step 1: {cause}"):
    checkpoint.Checkpoints(tmp_path, trainer.config).restore_or_init(trainer, tmp_path)
  assert (tmp_path / "checkpoints" / "1").is_dir()


def test_keeps_the_last_k_and_the_best(fresh, tmp_path):
  trainer, state = fresh
  losses = {1: {"loss": 3.0}, 2: {"loss": 1.0}, 3: {"loss": 2.0}, 4: {"loss": 5.0}}
  config = small_config("checkpoint.keep=2", "checkpoint.best_metric=loss")
  save_steps(tmp_path, trainer, state, [1, 2], losses, config)
  save_steps(tmp_path, trainer, state, [3, 4], losses, config)  # a resumed run still knows the metrics of 1 and 2
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [2, 3, 4]


def test_checkpoint_of_another_model_is_an_error(fresh, tmp_path):
  trainer, state = fresh
  save_steps(tmp_path, trainer, state, [1])
  wider = Trainer(small_config("model.intermediate_size=128"))
  with pytest.raises(UserError, match=r"checkpoint 1 in .* holds a different model: parameter encoder/ffn_0/"
                                      r"intermediate/bias has shape \(256,\) there and \(128,\) in this config; "
                                      r"use the config it was trained with, or a new --workdir"):
    checkpoint.Checkpoints(tmp_path, wider.config).restore_or_init(wider, tmp_path)
  assert (tmp_path / "checkpoints" / "1").is_dir()


def test_a_best_metric_the_objective_lacks_is_an_error(fresh, tmp_path):
  trainer, state = fresh
  checkpoints = checkpoint.Checkpoints(tmp_path, small_config("checkpoint.best_metric=mlm_acc"))
  saver = checkpoint.Saver(checkpoints, trainer.batches(str(tmp_path), 0),
                           lambda step, params: {"loss": 1.0, "mlm_accuracy": 0.5})
  with pytest.raises(UserError, match=r"checkpoint.best_metric 'mlm_acc' is not an eval metric of this objective; "
                                      r"use one of loss, mlm_accuracy$"):
    saver.save(0, state)
  saver.close()
  assert checkpoints.steps() == []
