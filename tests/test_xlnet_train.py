"""The tiny XLNet trains through the engine with no special case: the same losses on 8 devices as on 1."""

import jax
import numpy as np
import pytest

from bert_jax import config as config_lib
from bert_jax.train.metrics_writer import MetricsWriter
from bert_jax.train.trainer import Trainer

STEPS = 4
COMMON = ["data.source=synthetic", "train.batch_size=8", "data.seq_len=32", "objective.perm_size=8",
          "objective.num_predict=6", "model.reuse_len=16", f"train.steps={STEPS}", "train.log_every=1",
          "optimizer.warmup_steps=1", "optimizer.learning_rate=0.01", "objective.bi_data=True",
          "model.num_layers=1"]


def trainer(mesh_overrides, devices=None):
  return Trainer(config_lib.load_config("xlnet_tiny", COMMON + mesh_overrides), devices)


def run(tmp_path, trainer, state):
  writer = MetricsWriter(str(tmp_path), STEPS, enabled=False)
  return trainer.run(state, trainer.batches(str(tmp_path)), writer)[1]


@pytest.mark.slow
def test_sharded_training_equals_one_device(tmp_path):
  mesh_trainer = trainer(["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"])
  initial = mesh_trainer.init_state()
  one_device = trainer([], jax.devices()[:1])
  single = run(tmp_path, one_device, jax.device_put(jax.device_get(initial), one_device.state_shardings))
  sharded = run(tmp_path, mesh_trainer, initial)
  losses = np.array([r["loss"] for r in sharded])
  assert len(losses) == STEPS and np.ptp(losses) > 1e-2 and np.isfinite(losses).all()
  np.testing.assert_allclose(losses, [r["loss"] for r in single], rtol=1e-5)
  assert {"plm_loss", "plm_accuracy"} <= set(sharded[-1])
