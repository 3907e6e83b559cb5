"""The tiny BERT, RoBERTa and ALBERT learn on the demo corpus: the loss falls clearly in 120 steps."""

import jax
import numpy as np
import pytest

from bert_jax import config as config_lib
from bert_jax.train.metrics_writer import MetricsWriter

LEARNING_RATE = {"bert_tiny": "2e-3", "roberta_tiny": "2e-3", "albert_tiny": "2e-2"}  # LAMB takes relative steps


@pytest.mark.parametrize("name", sorted(LEARNING_RATE))
def test_tiny_config_learns_on_the_demo_corpus(name, tmp_path):
  from bert_jax.train.trainer import Trainer

  config = config_lib.load_config(name, ["train.steps=120", "train.batch_size=16", "train.log_every=10",
                                         "optimizer.warmup_steps=20", f"optimizer.learning_rate={LEARNING_RATE[name]}",
                                         "mesh.data=1"])
  trainer = Trainer(config, devices=jax.devices()[:1])
  state, records = trainer.run(trainer.init_state(), trainer.batches(str(tmp_path)),
                               MetricsWriter(str(tmp_path), config.train.steps, enabled=False))
  losses = [r["loss"] for r in records]
  accuracy = [r["mlm_accuracy"] for r in records]
  assert int(state.step) == 120 and len(losses) == 12 and all(np.isfinite(losses))
  assert np.mean(losses[-3:]) < np.mean(losses[:2]) - 1.0, losses
  assert np.mean(accuracy[-3:]) > np.mean(accuracy[:2]), accuracy
