"""`bert-jax evaluate`: a trained demo checkpoint scores clearly better than its step 0; the same numbers on every
call (API, --json, --watch, and training's own evaluation for keeping the best checkpoint); a checkpoint written on
an 8-device FSDP mesh gives the same metrics on 1 device; damaged checkpoints and bad input get one clear line."""

import json
import re
import shutil

from checkpoint_helpers import demo_config, demo_overrides, finished_reference_run
import jax
import pytest

from bert_jax import checkpoint, cli, config as config_lib, evaluate
from bert_jax.data.tf_cpu import tf
from bert_jax.errors import UserError
from bert_jax.objectives.masked_lm import MaskedLM
from bert_jax.train.trainer import Trainer

# A failed Orbax restore of a damaged checkpoint leaves reads that later report to its closed event loop.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

SYNTHETIC = ["data.source=synthetic", "data.seq_len=32", "objective.max_predictions=5", "model.vocab_size=512",
             "train.batch_size=8", "eval.batch_size=8", "eval.batches=3"]


def scalars(workdir) -> dict:
  found = {}
  for path in (workdir / "tensorboard").glob("events.*"):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        found[(value.tag, event.step)] = value.simple_value
  return found


def test_trained_demo_checkpoint_beats_step_0_and_every_call_gives_the_same_numbers(tmp_path_factory, capsys):
  workdir = finished_reference_run(tmp_path_factory)
  records = list(evaluate.evaluate(demo_config(tmp_path_factory), workdir, every=True))
  assert [r["step"] for r in records] == [0, 30, 60]
  first, last = records[0], records[-1]
  assert {"loss", "mlm_loss", "mlm_accuracy", "mlm_perplexity", "nsp_loss", "nsp_accuracy"} <= set(last)
  assert last["loss"] < first["loss"] - 0.8 and last["mlm_perplexity"] < first["mlm_perplexity"] / 2
  assert json.loads((workdir / "eval" / "60.json").read_text()) == last
  for record in records:  # what training computed on its 1 device for checkpoint.best_metric when it saved the step
    saved = json.loads((workdir / "checkpoints" / str(record["step"]) / "metrics" / "metrics").read_text())
    assert saved == pytest.approx({k: v for k, v in record.items() if k != "step"}, rel=1e-6)
  assert scalars(workdir)[("eval/mlm_loss", 60)] == pytest.approx(last["mlm_loss"], rel=1e-6)

  capsys.readouterr()
  assert cli.main(["evaluate", "--config", "bert_tiny", "--workdir", str(workdir), "--watch", "--json",
                   *[f"--config.{o}" for o in demo_overrides(tmp_path_factory)]]) == 0
  assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [last]


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
  """A checkpoint of step 7 written on an 8-device FSDP mesh."""
  workdir = tmp_path_factory.mktemp("fsdp_run")
  config = config_lib.load_config("bert_tiny", SYNTHETIC + ["mesh.data=1", "mesh.fsdp=8"])
  trainer = Trainer(config)
  state = trainer.init_state()
  checkpoints = checkpoint.Checkpoints(workdir, config)
  checkpoints.save(7, state.replace(step=jax.numpy.asarray(7, jax.numpy.int32)), trainer.batches(str(workdir), 7))
  checkpoints.close()
  return workdir, config


def test_fsdp_checkpoint_evaluates_the_same_on_one_device(fsdp_run, monkeypatch):
  workdir, config = fsdp_run
  monkeypatch.setattr(MaskedLM, "eval_extras", lambda self, model, params, batch, tokenizer: [
      {"rows": int(batch["input_ids"].shape[0]), "tokenizer": tokenizer}], raising=False)
  [on_fsdp] = evaluate.evaluate(config, workdir)
  samples = [{"rows": 8, "tokenizer": None}]
  assert json.loads((workdir / "eval" / "7.json").read_text()) == {**on_fsdp, "samples": samples}
  monkeypatch.delattr(MaskedLM, "eval_extras")
  [on_one] = evaluate.evaluate(config_lib.load_config("bert_tiny", SYNTHETIC), workdir, devices=jax.devices()[:1])
  assert on_fsdp["step"] == on_one["step"] == 7 and on_fsdp.keys() == on_one.keys()
  for name in on_fsdp:
    assert on_one[name] == pytest.approx(on_fsdp[name], rel=1e-5, abs=1e-7), name


def test_a_damaged_latest_checkpoint_is_skipped_unless_asked_for(fsdp_run, tmp_path, capsys):
  workdir, config = fsdp_run
  shutil.copytree(workdir / "checkpoints" / "7", tmp_path / "checkpoints" / "7")
  shutil.copytree(workdir / "checkpoints" / "7", tmp_path / "checkpoints" / "9")
  (tmp_path / "checkpoints" / "9" / "params" / "manifest.ocdbt").unlink()
  [record] = evaluate.evaluate(config, tmp_path)
  assert record["step"] == 7
  assert re.search(r"checkpoint 9 in .* is damaged \(.*/9/params/manifest.ocdbt is missing\); skipped",
                   capsys.readouterr().err)
  with pytest.raises(UserError, match=r"checkpoint 9 in .* is damaged \(.*/9/params/manifest.ocdbt is missing\)"):
    list(evaluate.evaluate(config, tmp_path, step=9))


BAD_INPUT = {
    "missing": r"workdir .*/nowhere does not exist; pass the --workdir of a training run",
    "empty": r".*/empty has no checkpoints directory; train with `bert-jax train --workdir .*/empty` first",
    "no_steps": r"no checkpoints in .*/no_steps/checkpoints; train with",
    "step": r"no checkpoint of step 5 in .*/checkpoints; it has: 7",
    "model": r"checkpoint 7 in .* holds a different model: parameter encoder/attention_0/layer_norm/bias has shape "
             r"\(64,\) there and \(32,\) in this config",
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_clear_line(fsdp_run, tmp_path, capsys, case):
  workdir, _ = fsdp_run
  args = {"missing": ["--workdir", str(tmp_path / "nowhere")], "empty": ["--workdir", str(tmp_path / "empty")],
          "no_steps": ["--workdir", str(tmp_path / "no_steps")], "step": ["--workdir", str(workdir), "--step", "5"],
          "model": ["--workdir", str(workdir), "--config.model.hidden_size=32"]}[case]
  (tmp_path / "empty").mkdir()
  (tmp_path / "no_steps" / "checkpoints").mkdir(parents=True)
  assert cli.main(["evaluate", "--config", "bert_tiny", *args, *[f"--config.{o}" for o in SYNTHETIC]]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("bert-jax: error: ")
  assert re.fullmatch(f"bert-jax: error: {BAD_INPUT[case]}.*", err[0]), err[0]
