"""Every family trains with bfloat16 compute (model.dtype=bfloat16, float32 parameters): on the CPU its products go
through layers.dot_general's bfloat16 -> float32 path, forward and backward, and the loss and gradient stay those of
float32 compute up to bfloat16's rounding."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import config as config_lib, models
from bert_jax.objectives import get_objective, training_loss

TINY = ["train.batch_size=4", "data.source=synthetic"]
CONFIGS = ["bert_tiny", "albert_tiny", "electra_tiny", "spanbert_tiny", "unilm_tiny", "xlnet_tiny", "t5_tiny",
           "gpt2_tiny", "bart_tiny"]


def _loss_and_grads(name: str, dtype: str):
  config = config_lib.load_config(name, [*TINY, f"model.dtype={dtype}"])
  objective = get_objective(config)
  model = models.build_model(config.model, deterministic=True)
  inputs = models.family(config.model).example_inputs(models.make_config(config.model))
  params = flax.linen.meta.unbox(model.init(jax.random.key(0), **inputs)["params"])
  rng = np.random.default_rng(1)
  params = jax.tree.map(lambda x: x + 0.03 * rng.standard_normal(x.shape, np.float32), params)
  batch = {k: jnp.asarray(v) for k, v in objective.synthetic_batch(4, np.random.default_rng(0)).items()}
  loss = lambda p: training_loss(objective.forward(model, p, batch, rngs={"dropout": jax.random.key(1)})[0],
                                 objective.counts(batch))
  return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("name", CONFIGS)
def test_bfloat16_compute_trains_as_float32_does(name):
  loss32, grads32 = _loss_and_grads(name, "float32")
  loss16, grads16 = _loss_and_grads(name, "bfloat16")
  assert abs(float(loss16) - float(loss32)) < 0.02 * abs(float(loss32))
  g32, g16 = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]) for g in (grads32, grads16))
  assert np.isfinite(g16).all() and g16.dtype == np.float32  # the parameters' gradients stay float32
  cosine = g16 @ g32 / (np.linalg.norm(g16) * np.linalg.norm(g32))
  assert cosine > 0.999, cosine
