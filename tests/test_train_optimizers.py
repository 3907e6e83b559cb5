"""Optimizers and schedules: the papers' recipes, weight decay only where it belongs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bert_jax import config as config_lib
from bert_jax.errors import UserError
from bert_jax.train import optimizers


def make_config(*overrides: str):
  return config_lib.load_config("bert_tiny", [f"--config.{o}" for o in ("train.steps=100", *overrides)])


PARAMS = {"dense": {"kernel": jnp.full((4, 3), 2.0), "bias": jnp.full((3,), 2.0)},
          "layer_norm": {"scale": jnp.full((4,), 2.0), "bias": jnp.full((4,), 2.0)},
          "embeddings": {"embedding": jnp.full((16, 4), 2.0)}}


def test_decay_mask_spares_biases_and_norm_scales():
  mask = optimizers.decay_mask(PARAMS)
  assert mask == {"dense": {"kernel": True, "bias": False}, "layer_norm": {"scale": False, "bias": False},
                  "embeddings": {"embedding": True}}


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_weight_decay_moves_only_the_decayed_parameters(name):
  config = make_config(f"optimizer.name={name}", "optimizer.weight_decay=0.1", "optimizer.schedule=constant",
                       "optimizer.warmup_steps=0", "train.clip_norm=0.0")
  optimizer = optimizers.make_optimizer(config, optimizers.learning_rate_schedule(config))
  zero_grads = jax.tree_util.tree_map(jnp.zeros_like, PARAMS)
  updates, _ = jax.jit(lambda p: optimizer.update(zero_grads, optimizer.init(p), p))(PARAMS)
  moved = jax.tree_util.tree_map(lambda u: bool(jnp.any(u != 0)), updates)
  assert moved == optimizers.decay_mask(PARAMS)
  assert float(updates["dense"]["kernel"][0, 0]) < 0  # decay pulls towards zero


@pytest.mark.parametrize("name", ["adamw", "lamb", "adafactor"])
def test_each_optimizer_minimises_a_quadratic(name):
  config = make_config(f"optimizer.name={name}", "optimizer.learning_rate=0.05", "optimizer.warmup_steps=0",
                       "optimizer.schedule=constant", "optimizer.weight_decay=0.0")
  optimizer = optimizers.make_optimizer(config, optimizers.learning_rate_schedule(config))
  target = jax.tree_util.tree_map(lambda p: jnp.linspace(-1, 1, p.size).reshape(p.shape), PARAMS)
  loss = lambda p: sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(p),
                                                            jax.tree_util.tree_leaves(target)))

  def step(carry, _):
    params, state = carry
    updates, state = optimizer.update(jax.grad(loss)(params), state, params)
    return (optax.apply_updates(params, updates), state), None

  (params, _), _ = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), length=60))(PARAMS)
  assert float(loss(params)) < 0.2 * float(loss(PARAMS))


def test_linear_schedule_warms_up_then_decays_to_zero():
  schedule = optimizers.learning_rate_schedule(make_config("optimizer.learning_rate=1e-3",
                                                           "optimizer.warmup_steps=10"))
  values = np.array([schedule(s) for s in (0, 5, 10, 55, 100)])
  np.testing.assert_allclose(values, [0.0, 5e-4, 1e-3, 5e-4, 0.0], atol=1e-9)


def test_decay_ends_at_min_lr_ratio_and_cosine_halves_at_the_middle():
  for name, middle in (("linear", 0.5 * (1e-3 + 1e-5)), ("cosine", 1e-5 + (1e-3 - 1e-5) * 0.5)):
    schedule = optimizers.learning_rate_schedule(make_config(
        "optimizer.learning_rate=1e-3", "optimizer.warmup_steps=10", f"optimizer.schedule={name}",
        "optimizer.min_lr_ratio=0.01"))
    values = np.array([schedule(s) for s in (0, 5, 10, 55, 100)])
    np.testing.assert_allclose(values, [0.0, 5e-4, 1e-3, middle, 1e-5], rtol=1e-6, atol=1e-12, err_msg=name)
  schedule = optimizers.learning_rate_schedule(make_config("optimizer.learning_rate=1e-3", "optimizer.warmup_steps=10",
                                                           "optimizer.schedule=cosine"))
  quarter = 1e-3 * 0.5 * (1 + np.cos(np.pi * 0.25))  # a quarter of the way down: above the linear 7.5e-4
  np.testing.assert_allclose([schedule(32.5), schedule(100)], [quarter, 0.0], rtol=1e-6, atol=1e-12)
  assert config_lib.load_config("xlnet_base").optimizer.min_lr_ratio == 0.001  # XLNet's release
  with pytest.raises(UserError, match="min_lr_ratio"):
    optimizers.learning_rate_schedule(make_config("optimizer.min_lr_ratio=2"))


def test_rsqrt_schedule_is_t5s():
  schedule = optimizers.learning_rate_schedule(make_config("optimizer.schedule=rsqrt", "optimizer.learning_rate=0.01",
                                                           "optimizer.warmup_steps=10000"))
  for step in (0, 5000, 10000, 40000, 250000):
    assert float(schedule(step)) == pytest.approx(1 / np.sqrt(max(step, 10000)), rel=1e-6)


@pytest.mark.parametrize("clip_norm, expected_norm", [(1.0, 1.0), (0.0, None)])
def test_gradients_are_clipped_to_the_global_norm(clip_norm, expected_norm):
  config = make_config("optimizer.name=adamw", f"train.clip_norm={clip_norm}")
  optimizer = optimizers.make_optimizer(config, optimizers.learning_rate_schedule(config))
  grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 100.0), PARAMS)
  _, state = jax.jit(lambda p: optimizer.update(grads, optimizer.init(p), p))(PARAMS)
  adam = state[1][0] if clip_norm else state[0]
  seen_norm = float(optax.tree.norm(adam.mu)) / (1 - config.optimizer.b1)  # mu = (1 - b1) * gradient
  assert seen_norm == pytest.approx(expected_norm or float(optax.tree.norm(grads)), rel=1e-5)


@pytest.mark.parametrize("overrides, message", [
    (["optimizer.name=sgd"], "optimizer.name must be one of"),
    (["optimizer.schedule=exponential"], "optimizer.schedule must be one of"),
    (["train.clip_norm=-1.0"], "train.clip_norm must be >= 0"),
])
def test_bad_optimizer_settings(overrides, message):
  config = make_config(*overrides)
  with pytest.raises(UserError, match=message):
    optimizers.make_optimizer(config, optimizers.learning_rate_schedule(config))


@pytest.mark.parametrize("scanned", [False, True])
def test_layer_decay_scales_each_layer_as_electra(scanned):
  """ELECTRA's _get_layer_lrs: the head at the full rate, layer k of L at decay ** (L + 1 - k), the embeddings at
  decay ** (L + 2); a scanned stack gets each slice's own factor."""
  from flax import traverse_util

  from bert_jax import config as config_lib, params as params_lib

  def updates(decay: float) -> dict:
    config = config_lib.load_config("bert_tiny", ["model.head=classification", f"model.scan_layers={scanned}",
                                                  f"optimizer.layer_decay={decay}", "optimizer.warmup_steps=0",
                                                  "train.clip_norm=0"])
    params = jax.tree_util.tree_map(lambda s: jnp.ones(s.shape), params_lib.abstract(config.model))
    optimizer = optimizers.make_optimizer(config, optimizers.learning_rate_schedule(config))
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    return traverse_util.flatten_dict(optimizer.update(grads, optimizer.init(params), params)[0], sep="/")

  plain, decayed = updates(1.0), updates(0.8)
  layers = 2  # bert_tiny
  for path, update in plain.items():
    ratio = np.asarray(decayed[path] / update)
    if "embeddings" in path:
      expected = 0.8 ** (layers + 2)
    elif path.startswith(("classifier", "encoder/pooler")):
      expected = 1.0
    elif scanned:
      expected = (0.8 ** (layers + 1 - np.arange(layers))).reshape((layers,) + (1,) * (update.ndim - 1))
    else:
      expected = 0.8 ** (layers + 1 - int(path.split("/")[1].split("_")[1]))
    np.testing.assert_allclose(ratio, np.broadcast_to(expected, ratio.shape), rtol=1e-5, err_msg=path)


def test_adafactor_is_optax_adafactor_on_each_kernels_matrix_view():
  """T5's attention kernels [d_model, heads, d_kv] (and a scanned stack's [layers, ...]) get the factored moments
  Mesh TensorFlow's [d_model, heads * d_kv] variables get; the updates are optax.adafactor's on those views."""
  rng = np.random.default_rng(0)
  params = {"query": {"kernel": rng.standard_normal((256, 4, 64))},
            "out": {"kernel": rng.standard_normal((4, 64, 256))},
            "layers": {"key": {"kernel": rng.standard_normal((3, 256, 4, 64))}},
            "wi": {"kernel": rng.standard_normal((256, 384))}, "norm": {"scale": rng.standard_normal(256) * 1e-4}}
  params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
  grads = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32), params)
  views = {"query": (256, 256), "out": (256, 256), "layers": (3, 256, 256), "wi": (256, 384), "norm": (256,)}
  as_views = lambda tree: {k: jax.tree_util.tree_map(lambda x: x.reshape(views[k]), v) for k, v in tree.items()}
  schedule = lambda step: 0.01
  ours, reference = optimizers.adafactor(schedule), optax.adafactor(schedule)
  state, reference_state = ours.init(params), reference.init(as_views(params))
  for _ in range(3):
    updates, state = ours.update(grads, state, params)
    expected, reference_state = reference.update(as_views(grads), reference_state, as_views(params))
    for got, want in zip(jax.tree_util.tree_leaves(as_views(updates)), jax.tree_util.tree_leaves(expected)):
      np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
  factored = state[0]
  assert factored.v["query"]["kernel"].shape == (1,) and factored.v_row["query"]["kernel"].shape == (256,)
  assert factored.v_row["layers"]["key"]["kernel"].shape == (3, 256)
  assert factored.v["norm"]["scale"].shape == (256,)  # 1-D: a full moment, as Adafactor keeps


def test_adafactor_scales_by_the_parameter_rms_floored_at_1e_3():
  params = {"big": jnp.full((4,), 2.0), "tiny": jnp.full((4,), 1e-6)}
  updates, _ = optimizers.scale_by_parameter_rms(1e-3).update({"big": jnp.ones(4), "tiny": jnp.ones(4)}, None, params)
  np.testing.assert_allclose(updates["big"], 2.0)
  np.testing.assert_allclose(updates["tiny"], 1e-3)
