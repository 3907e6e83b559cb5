"""`bert-jax convert` takes a parameter checkpoint or a training checkpoint's step, every path relative to the
current directory; any other path is one error line (exit status 2) that says what to pass, and writes nothing."""

from pathlib import Path

from cli_helpers import error_line, snapshot
import jax
import numpy as np
import orbax.checkpoint as ocp

from bert_jax import cli, config as config_lib, models, params as params_lib
from bert_jax.convert import weights

STEP = 300


def _random_params(config) -> dict:
  module = models.family(config.model)
  cfg = module.make_config(config.model)
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map(lambda leaf: rng.normal(0, 0.02, leaf.shape).astype(np.float32),
                                params_lib.abstract_params(module.build(cfg), module.example_inputs(cfg)))


def _training_checkpoint(workdir: Path, params: dict) -> None:
  """W/checkpoints/STEP/{params, train_state}, the items a training run saves."""
  handlers = {"params": ocp.StandardCheckpointHandler(), "train_state": ocp.StandardCheckpointHandler()}
  with ocp.CheckpointManager(workdir.resolve() / "checkpoints", item_handlers=handlers) as manager:
    manager.save(STEP, args=ocp.args.Composite(
        params=ocp.args.StandardSave(params),
        train_state=ocp.args.StandardSave({"step": np.int32(STEP), "opt_state": {"mu": params},
                                           "rng": np.zeros(2, np.uint32)})))
    manager.wait_until_finished()


def test_export_from_a_training_checkpoint_with_relative_paths(tmp_path, capsys, monkeypatch):
  params = _random_params(config_lib.load_config("bert_tiny"))
  _training_checkpoint(tmp_path / "w", params)
  monkeypatch.chdir(tmp_path)
  export = ["convert", "--to-hf", "--config", "bert_tiny"]
  for given, output in ((f"w/checkpoints/{STEP}", "hf_step"), (f"w/checkpoints/{STEP}/params", "hf_item")):
    assert cli.main([*export, "--params", given, "--output", output]) == 0
  exported = [weights.read_hf_dir(tmp_path / name)[0] for name in ("hf_step", "hf_item")]
  assert exported[0].keys() == exported[1].keys()
  for key in exported[0]:
    np.testing.assert_array_equal(exported[0][key], exported[1][key])

  assert cli.main(["convert", "--from-hf", "hf_step", "--output", "ours"]) == 0
  jax.tree_util.tree_map(np.testing.assert_array_equal, weights.restore_params("ours/params"), params)

  checkpoints = tmp_path / "w" / "checkpoints"
  damaged = tmp_path / "damaged"
  damaged.mkdir()
  (damaged / "params_copy").mkdir()
  (damaged / "params_copy" / "_METADATA").write_text("{not json")
  (tmp_path / "notes.txt").write_text("not a checkpoint")
  before = snapshot(tmp_path)
  cases = [  # (--params, a part of the error line)
      ("w/checkpoints", f"{checkpoints} holds the training checkpoints of steps {STEP}; pass one step, e.g. "
                        f"--params {checkpoints / str(STEP)}"),
      ("w", f"{tmp_path / 'w'} is not a parameter checkpoint; pass the params directory"),
      ("notes.txt", "notes.txt is not a parameter checkpoint"),
      ("missing", f"parameter checkpoint {tmp_path / 'missing'} not found"),
      (f"w/checkpoints/{STEP}/train_state", "holds a training state, not parameters; pass"),
      ("damaged/params_copy", f"cannot read the parameter checkpoint {damaged / 'params_copy'}"),
  ]
  for given, message in cases:
    assert message in error_line(capsys, [*export, "--params", given, "--output", "out"])
  assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()
