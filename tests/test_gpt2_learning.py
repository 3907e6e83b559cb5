"""The tiny GPT-2 learns on the demo corpus through the CLI: `bert-jax train`, then `bert-jax evaluate` reports a
held-out perplexity well below the unigram baseline (the training split's token frequencies, add-half smoothed,
on the same held-out targets), and `bert-jax predict` continues a text with the trained model."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bert_jax import cli, config as config_lib
from bert_jax.data import pipeline
from bert_jax.objectives import get_objective

# A byte-level vocabulary of 300 ids (256 bytes, 6 special tokens, 38 merges) learns its context fastest; no dropout
# (held-out perplexity 24.4 against 55.6 for the unigram baseline at step 200; lr 2e-2 gets only 0.9).
OVERRIDES = ["train.steps=200", "train.batch_size=32", "train.log_every=50", "optimizer.learning_rate=3e-3",
             "optimizer.warmup_steps=10", "model.vocab_size=300", "model.dropout=0", "model.attention_dropout=0",
             "model.embedding_dropout=0", "eval.batch_size=16", "eval.batches=4",
             "objective.max_new_tokens=6", "checkpoint.every=200"]


def _unigram_perplexity(config, workdir: str) -> float:
  train = np.concatenate([d["token_ids"] for d in pipeline.documents(config, workdir, "train").as_numpy_iterator()])
  vocab = config.model.vocab_size
  frequency = (np.bincount(train, minlength=vocab) + 0.5) / (train.size + 0.5 * vocab)
  batches = pipeline.eval_dataset(config, get_objective(config), workdir).as_numpy_iterator()
  targets = np.concatenate([batch["target_ids"].ravel() for batch in batches])
  return float(np.exp(-np.mean(np.log(frequency[targets]))))


@pytest.mark.slow
def test_tiny_gpt2_learns_evaluates_and_generates(tmp_path, capsys):
  workdir = str(tmp_path / "run")
  flags = [f"--config.{o}" for o in OVERRIDES]
  # trained on one CPU device, as a user's `bert-jax train` runs on a laptop (the tests' 8 virtual ones slow it down)
  flags_one_device = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
  env = {**os.environ, "XLA_FLAGS": flags_one_device}
  subprocess.run([sys.executable, "-m", "bert_jax.cli", "train", "--config", "gpt2_tiny", "--workdir", workdir, *flags,
                  "--config.mesh.data=1"], env=env, check=True, capture_output=True)
  assert cli.main(["evaluate", "--config", "gpt2_tiny", "--workdir", workdir, "--json", *flags]) == 0
  record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  baseline = _unigram_perplexity(config_lib.load_config("gpt2_tiny", OVERRIDES), workdir)
  assert record["step"] == 200 and record["lm_perplexity"] == np.exp(record["lm_loss"])
  assert record["lm_perplexity"] < 0.6 * baseline, (record, baseline)
  assert cli.main(["predict", "--workdir", workdir, "--json", "--text", "The function returns", "--text", "def",
                   "--config.mesh.data=-1"]) == 0
  records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
  assert [r["input"] for r in records] == ["The function returns", "def"]
  for r in records:
    (prediction,) = r["predictions"]
    assert r["output"] == r["input"] + prediction["text"] and 1 <= len(prediction["ids"]) <= 6
