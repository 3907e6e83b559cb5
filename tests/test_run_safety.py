"""A run never loses what it made and never fails quietly: a failed or disk-full save stops the run with one line and
keeps the last committed checkpoint; flipped bytes in a checkpoint are found; one trainer per workdir (a stale lock
is taken over); a resumed run logs every step once; config.json is written only once the checkpoint check passes;
eval.every evaluates during training; evaluating nothing is an error."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time

import orbax.checkpoint as ocp
import pytest

from bert_jax import checkpoint, cli, config as config_lib
from bert_jax.files import workdir as workdir_lib
from bert_jax.train import loop, metrics_writer

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

SMALL = ["data.source=synthetic", "data.seq_len=32", "objective.max_predictions=5", "model.vocab_size=512",
         "train.batch_size=8", "eval.batch_size=8", "eval.batches=2", "train.log_every=1"]


def small_config(*overrides: str):
  return config_lib.load_config("bert_tiny", SMALL + list(overrides))


def rows(workdir) -> list[dict]:
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def train_steps(workdir) -> list[int]:
  return [r["step"] for r in rows(workdir) if "loss" in r]


def one_error_line(capsys) -> str:
  err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert len(err) == 1, err
  assert err[0].startswith("bert-jax: error: ") and "Traceback" not in err[0]
  return err[0]


@pytest.fixture
def failing_saves(monkeypatch):
  """Every save after the first fails in Orbax's background thread, as a full disk makes it fail."""
  original = ocp.StandardCheckpointHandler.async_save
  seen = []

  class DiskFull:
    def result(self, timeout=None):
      raise OSError(errno.ENOSPC, "No space left on device")

  async def async_save(self, directory, *args, **kwargs):
    futures = await original(self, directory, *args, **kwargs)
    seen.append(str(directory))
    return futures if len(seen) <= 2 else [*(futures or []), DiskFull()]  # params and train_state of step 0

  monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", async_save)


def test_a_failed_background_save_stops_the_run_in_one_line(tmp_path, failing_saves, capsys):
  config = small_config("train.steps=12", "checkpoint.every=3")
  code = cli.main(["train", "--config", "bert_tiny", "--workdir", str(tmp_path),
                   *[f"--config.{o}" for o in SMALL], "--config.train.steps=12", "--config.checkpoint.every=3"])
  err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bert-jax: error:")]
  assert code == 1 and len(err) == 1
  assert re.fullmatch(rf"bert-jax: error: checkpoint 3 could not be written to {tmp_path}/checkpoints/3 \(no space "
                      r"left on device\); training stopped; the last committed checkpoint is 0; fix the cause and run "
                      r"the same command to resume", err[0]), err[0]
  assert checkpoint.Checkpoints(tmp_path, config, read_only=True).steps() == [0]
  assert max(train_steps(tmp_path)) < 12  # stopped, not trained on to the end
  assert not (tmp_path / workdir_lib.LOCK).exists()


def test_a_disk_full_at_the_start_of_a_save_is_one_line(tmp_path, monkeypatch, capsys):
  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(ocp.CheckpointManager, "save", full)
  code = cli.main(["train", "--config", "bert_tiny", "--workdir", str(tmp_path), *[f"--config.{o}" for o in SMALL],
                   "--config.train.steps=2"])
  assert code == 1
  assert "checkpoint 0 could not be written" in one_error_line(capsys)


def test_flipped_bytes_are_found_and_training_falls_back(tmp_path, capsys):
  config = small_config("train.steps=4", "checkpoint.every=2")
  loop.train(config, str(tmp_path))
  victim = max((p for p in (tmp_path / "checkpoints" / "4" / "params").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
  data = bytearray(victim.read_bytes())
  data[len(data) // 2] ^= 0x01
  victim.write_bytes(bytes(data))
  capsys.readouterr()
  state, _ = loop.train(small_config("train.steps=6", "checkpoint.every=2"), str(tmp_path))
  err = capsys.readouterr().err
  assert re.search(r"checkpoint 4 in .* is damaged \(.* is corrupt \(its SHA-256 differs", err), err
  assert "resuming from checkpoint 2" in err and int(state.step) == 6
  assert (tmp_path / "damaged_checkpoints" / "4" / "params").is_dir()
  assert train_steps(tmp_path) == [1, 2, 3, 4, 5, 6]  # the steps after checkpoint 2 logged once, by the rerun


def test_evaluate_that_evaluates_nothing_fails(tmp_path, capsys):
  loop.train(small_config("train.steps=1"), str(tmp_path))
  for step in (0, 1):
    (tmp_path / "checkpoints" / str(step) / "params" / "manifest.ocdbt").unlink()
  capsys.readouterr()
  assert cli.main(["evaluate", "--config", "bert_tiny", "--workdir", str(tmp_path), "--all",
                   *[f"--config.{o}" for o in SMALL]]) == 2
  err = capsys.readouterr().err.splitlines()
  assert sum("is damaged" in line for line in err) == 2
  assert err[-1].startswith("bert-jax: error: none of the checkpoints in")


def test_refused_config_leaves_config_json_alone(tmp_path, capsys):
  loop.train(small_config("train.steps=1"), str(tmp_path))
  before = (tmp_path / "config.json").read_text()
  assert cli.main(["train", "--config", "bert_tiny", "--workdir", str(tmp_path), *[f"--config.{o}" for o in SMALL],
                   "--config.model.intermediate_size=128"]) == 2
  assert "holds a different model" in one_error_line(capsys)
  assert (tmp_path / "config.json").read_text() == before
  assert not (tmp_path / workdir_lib.LOCK).exists()


def test_eval_every_evaluates_during_training(tmp_path):
  loop.train(small_config("train.steps=4", "eval.every=2", "checkpoint.every=0"), str(tmp_path))
  assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["2.json", "4.json"]
  evals = [r for r in rows(tmp_path) if "eval/loss" in r]
  assert [r["step"] for r in evals] == [2, 4]
  assert evals[-1]["eval/loss"] == pytest.approx(json.loads((tmp_path / "eval" / "4.json").read_text())["loss"])


def test_resume_drops_the_rows_an_interrupted_run_logged_after_its_checkpoint(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 8)) + '{"step": 8, "lo')
  writer = metrics_writer.MetricsWriter(str(tmp_path), 10, start_step=5)
  writer.write({"step": 6, "loss": 2.0, "learning_rate": 0.1})
  writer.close()
  assert [(r["step"], r["loss"]) for r in rows(tmp_path)] == [(s, 1.0) for s in range(1, 6)] + [(6, 2.0)]


def test_a_second_trainer_on_a_workdir_is_refused_and_the_first_is_unharmed(tmp_path, capsys):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
  first = subprocess.Popen([sys.executable, "-m", "bert_jax.cli", "train", "--config", "bert_tiny", "--workdir",
                            str(tmp_path), *[f"--config.{o}" for o in SMALL], "--config.train.steps=200"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.monotonic() + 300
    while not (tmp_path / "metrics.jsonl").exists() or not train_steps(tmp_path):
      assert first.poll() is None, first.communicate()[0][-3000:]
      assert time.monotonic() < deadline
      time.sleep(0.1)
    capsys.readouterr()
    assert cli.main(["train", "--config", "bert_tiny", "--workdir", str(tmp_path), *[f"--config.{o}" for o in SMALL],
                     "--config.train.steps=200"]) == 2
    line = one_error_line(capsys)
    assert re.fullmatch(rf"bert-jax: error: {tmp_path} is in use by another run \(process {first.pid} on this "
                        rf"machine\); wait for it to finish or use another --workdir \(if no run uses it, delete "
                        rf"{tmp_path}/.lock\)", line), line
    output, _ = first.communicate(timeout=600)
  finally:
    if first.poll() is None:
      first.send_signal(signal.SIGKILL)
  assert first.returncode == 0, output[-3000:]
  assert train_steps(tmp_path) == list(range(1, 201))
  assert not (tmp_path / workdir_lib.LOCK).exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
  lock = workdir_lib.RunLock(str(tmp_path))
  (tmp_path / workdir_lib.LOCK).write_text(json.dumps({**lock.owner, "pid": int(dead.stdout)}))
  with lock:
    assert json.loads((tmp_path / workdir_lib.LOCK).read_text()) == lock.owner
  assert not (tmp_path / workdir_lib.LOCK).exists()
