"""Shared by tests/test_checkpoint_resume.py, test_evaluate.py, test_predict.py and test_data_stream.py: the demo
corpus prepared once per session, `bert-jax train` runs in subprocesses on one CPU device (each checkpoint saved with
its eval metrics, for keeping the best), one finished reference run (checkpoints 0, 30, 60), and its metrics rows
compared without their timings."""

import json
import os
from pathlib import Path
import subprocess
import sys

from bert_jax import config as config_lib

DEMO = ["data.seq_len=32", "objective.max_predictions=5", "model.vocab_size=1000", "train.batch_size=8",
        "eval.batch_size=8", "eval.batches=2", "data.shuffle_buffer=100", "optimizer.warmup_steps=10",
        "optimizer.learning_rate=0.002", "train.steps=60", "train.log_every=1", "checkpoint.every=30",
        "checkpoint.best_metric=mlm_loss"]
TRAIN = [sys.executable, "-m", "bert_jax.cli", "train", "--config", "bert_tiny"]


def demo_overrides(tmp_path_factory) -> list[str]:
  """DEMO plus the tokenizer and prepared data of the demo corpus, made once per test session."""
  from bert_jax.data import pipeline

  root = tmp_path_factory.getbasetemp() / "demo_data"
  if not (root / "data" / "metadata.json").is_file():
    pipeline.prepare_if_needed(config_lib.load_config("bert_tiny", DEMO), root)
  return DEMO + [f"data.prepared_dir={root / 'data'}", f"data.tokenizer={root / 'tokenizer' / 'spm.model'}"]


def demo_config(tmp_path_factory, *overrides: str):
  return config_lib.load_config("bert_tiny", demo_overrides(tmp_path_factory) + list(overrides))


def start_train(workdir: Path, overrides: list[str]) -> subprocess.Popen:
  """One CPU device; the runs share a persistent compilation cache, so only the first ones compile."""
  cache = workdir.parent / "jax_compilation_cache"
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu",
         "JAX_COMPILATION_CACHE_DIR": str(cache)}
  return subprocess.Popen(TRAIN + ["--workdir", str(workdir)] + [f"--config.{o}" for o in overrides], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 600) -> str:
  output, _ = process.communicate(timeout=timeout)
  assert process.returncode == 0, output[-3000:]
  return output


def reference_run(tmp_path_factory) -> tuple[Path, subprocess.Popen | None]:
  """The uninterrupted demo run of 60 steps: its workdir, and its process while it still has to run."""
  workdir = tmp_path_factory.getbasetemp() / "reference_run"
  if (workdir / "checkpoints" / "60").is_dir():
    return workdir, None
  return workdir, start_train(workdir, demo_overrides(tmp_path_factory))


def finished_reference_run(tmp_path_factory) -> Path:
  workdir, process = reference_run(tmp_path_factory)
  if process is not None:
    finish(process)
  return workdir


TIMING = ("tokens_per_second", "mfu", "eta_seconds")


def comparable(record: dict) -> dict:
  """A metrics row without its timings, which differ from run to run."""
  return {k: v for k, v in record.items() if k not in TIMING}


def records(workdir: Path) -> list[dict]:
  """The training rows of metrics.jsonl (evaluation rows, with keys eval/..., left out)."""
  path = workdir / "metrics.jsonl"
  rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
  return [row for row in rows if "loss" in row]
