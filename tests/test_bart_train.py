"""The tiny BART learns on the demo corpus through `bert-jax train`: the held-out loss falls well below that of a
model that has learned nothing (uniform over the vocabulary, where the run starts)."""

import json
import math

from bert_jax import cli

STEPS = 24


def test_tiny_bart_learns_on_the_demo_corpus(tmp_path):
  overrides = [f"train.steps={STEPS}", "train.batch_size=8", "train.log_every=4", "optimizer.learning_rate=6e-3",
               "optimizer.warmup_steps=6", f"eval.every={STEPS}", "eval.batches=2", "eval.batch_size=16",
               "checkpoint.every=1000", "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"]
  assert cli.main(["train", "--config", "bart_tiny", "--workdir", str(tmp_path),
                   *[f"--config.{o}" for o in overrides]]) == 0
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  uniform = math.log(4096)
  train = [r["loss"] for r in records if "loss" in r]
  assert abs(train[0] - uniform) < 0.2  # the untrained model guesses uniformly: the baseline
  held_out = json.loads((tmp_path / "eval" / f"{STEPS}.json").read_text())
  assert held_out["targets_loss"] < uniform - 1.5, held_out
  assert held_out["targets_accuracy"] > 0.02  # a uniform guess: 1 / 4096
