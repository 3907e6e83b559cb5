"""The attention core (models/attention.py): each implementation equals xla within 1e-5 in float32 (splash in the
Pallas interpreter), for the core and for every family; what runs where; what is refused, in one line; splash
lowers to a Mosaic kernel in a deviceless TPU compile."""

import importlib.util
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import numpy as np
import pytest

from bert_jax import config as config_lib, models, parallel, params as params_lib
from bert_jax.errors import UserError
from bert_jax.models import attention, gpt2

os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # a deviceless TPU compile beside another process's

FUSED = ("dot_product_attention", "splash")
B, L, N, K = 2, 128, 2, 16


def _qkv(source_length: int = L, seed: int = 0):
  rng = np.random.default_rng(seed)
  shape = lambda length: (B, length, N, K)
  return tuple(jnp.asarray(rng.normal(size=s), jnp.float32) for s in (shape(L), shape(source_length),
                                                                        shape(source_length)))


def _lengths(length: int, real: tuple[int, ...]) -> jax.Array:
  return jnp.asarray(np.arange(length)[None] < np.array(real)[:, None], jnp.int32)


def _packed(length: int) -> jax.Array:
  """Row 0: two examples; row 1: one example, then padding (segment 0)."""
  segments = np.ones((B, length), np.int32)
  segments[0, length // 2 + 7:] = 2
  segments[1, length - 40:] = 0
  return jnp.asarray(segments)


def _full() -> jax.Array:
  full = np.tril(np.ones((B, L, L), bool))
  full[0, :, :30] = True  # a bidirectional prefix, as UniLM's seq2seq mask
  full[1, :, 100:] = False
  return jnp.asarray(full)


MASKS = {
    "padding": lambda S: attention.padding(_lengths(S, (S, S - 37))),
    "causal": lambda S: attention.Mask(key_BS=_lengths(S, (S, S - 37)), causal=True),
    "packed": lambda S: attention.segments(_packed(L), _packed(S)),
    "packed_causal": lambda S: attention.segments(_packed(L), _packed(S), causal=True),
}


def _visible_rows(mask: attention.Mask, source_length: int) -> np.ndarray:
  """[B, L, 1, 1]: the queries that see a key (what a query that sees none gives differs: padding rows)."""
  return np.asarray(mask.dense(L, source_length).any(-1))[:, 0, :, None, None]


@pytest.mark.parametrize("kind,source_length", [(kind, L) for kind in sorted(MASKS)] + [  # and cross-attention
    ("padding", 2 * L), ("packed", 2 * L)])
@pytest.mark.parametrize("implementation", FUSED)
def test_each_implementation_equals_xla(implementation, kind, source_length):
  q, k, v = _qkv(source_length)
  mask = MASKS[kind](source_length)
  run = lambda impl: jax.jit(lambda q, k, v: attention.attend(q, k, v, mask, implementation=impl))(q, k, v)
  rows = _visible_rows(mask, source_length)
  np.testing.assert_allclose(np.where(rows, run(implementation), 0), np.where(rows, run("xla"), 0), atol=1e-5,
                             rtol=1e-5)


@pytest.mark.parametrize("implementation", FUSED)
def test_gradients_equal_xla(implementation):
  q, k, v = _qkv()
  mask = MASKS["packed_causal"](L)
  weights = jnp.asarray(np.random.default_rng(3).normal(size=(B, L, N, K)) * _visible_rows(mask, L), jnp.float32)
  grad = lambda impl: jax.jit(jax.grad(
      lambda q, k, v: jnp.sum(attention.attend(q, k, v, mask, implementation=impl) * weights), (0, 1, 2)))(q, k, v)
  for fused, xla in zip(grad(implementation), grad("xla")):
    np.testing.assert_allclose(fused, xla, atol=1e-5, rtol=1e-4)


def test_dot_product_attention_takes_a_bias_a_scale_and_a_full_mask():
  q, k, v = _qkv()
  bias_BNLS = jnp.asarray(np.random.default_rng(4).normal(size=(1, N, L, L)), jnp.float32)
  for mask, bias, scale in ((MASKS["packed_causal"](L), bias_BNLS, 1.0), (attention.Mask(full_BLS=_full()), None, 0.3)):
    run = lambda impl: attention.attend(q, k, v, mask, bias_BNLS=bias, scale=scale, implementation=impl)
    np.testing.assert_allclose(run("dot_product_attention"), run("xla"), atol=1e-5, rtol=1e-5)


def test_sharded_splash_equals_unsharded():
  """Under a mesh that shards batch and heads, splash runs in shard_map on each device's rows and heads."""
  q, k, v = _qkv()
  mask = MASKS["causal"](L)
  mesh = parallel.make_mesh({"dcn": 1, "data": 2, "fsdp": 1, "tensor": 2}, jax.devices()[:4])
  expected = attention.attend(q, k, v, mask, implementation="xla")
  with jax.set_mesh(mesh), nn.logical_axis_rules(parallel.DEFAULT_RULES):
    sharding = NamedSharding(mesh, PartitionSpec(("data", "fsdp"), None, "tensor", None))
    q, k, v = (jax.device_put(x, sharding) for x in (q, k, v))
    out = jax.jit(lambda q, k, v: attention.attend(q, k, v, mask, implementation="splash"))(q, k, v)
  np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)


# Families at length 128 (splash's block), with padding; position tables long enough for it.
FAMILIES = {
    "bert_tiny": ("model.max_position=160",),
    "albert_tiny": ("model.max_position=160",),
    "roberta_tiny": ("model.max_position=160",),
    "electra_tiny": ("model.max_position=160",),
    "spanbert_tiny": ("model.max_position=160",),
    "unilm_tiny": ("model.max_position=160",),  # a full mask per example: splash refuses it
    "gpt2_tiny": (),
    "bart_tiny": ("model.max_position=128",),
    "t5_tiny": (),  # packed rows and the relative position bias: splash refuses it
}


def _family_inputs(name: str, module, cfg) -> dict:
  rng = np.random.default_rng(0)
  inputs = {}
  for key in module.example_inputs(cfg, B, L):
    if "segment" in key:
      inputs[key] = _packed(L)
    elif "mask" in key:
      inputs[key] = _lengths(L, (L, L - 40))
    elif "type" in key:
      inputs[key] = jnp.zeros((B, L), jnp.int32)
    else:
      inputs[key] = jnp.asarray(rng.integers(3, 100, (B, L)), jnp.int32)
  if name == "unilm_tiny":
    inputs["attention_mask_BL"] = _full().astype(jnp.int32)
  return inputs


def _family(name: str, implementation: str):
  config = config_lib.load_config(name, FAMILIES[name] + ("data.seq_len=128", f"model.attention={implementation}"))
  module = models.family(config.model)
  cfg = module.make_config(config.model)
  module.validate(cfg)
  return module, cfg


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_gives_the_same_outputs_with_each_implementation(name):
  module, cfg = _family(name, "xla")
  inputs = _family_inputs(name, module, cfg)
  rng = np.random.default_rng(1)
  params = jax.tree_util.tree_map(lambda s: jnp.asarray(rng.normal(0, 0.1, s.shape), s.dtype),
                                  params_lib.abstract_params(module.build(cfg), inputs))
  outputs = lambda cfg: jax.tree_util.tree_leaves(jax.jit(module.build(cfg).apply)({"params": params}, **inputs))
  expected = outputs(cfg)
  for implementation in FUSED:
    if (name, implementation) in (("unilm_tiny", "splash"), ("t5_tiny", "splash")):
      continue
    for got, want in zip(outputs(_family(name, implementation)[1]), expected, strict=True):
      np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=f"{name} {implementation}")


def test_cached_gpt2_decoding_is_the_same_with_dot_product_attention():
  """Two steps of two tokens over the KV cache (splash runs xla for decoding steps: see the resolve test)."""
  ids = jnp.asarray(np.random.default_rng(0).integers(3, 100, (B, 4)), jnp.int32)
  logits = {}
  for implementation in ("xla", "dot_product_attention"):
    model = gpt2.build(_family("gpt2_tiny", implementation)[1])
    if implementation == "xla":
      rng = np.random.default_rng(1)
      params = jax.tree_util.tree_map(lambda s: jnp.asarray(rng.normal(0, 0.1, s.shape), s.dtype),
                                      params_lib.abstract_params(model, {"input_ids_BL": ids}))
    step = jax.jit(lambda cache, ids_BT, first: model.apply(
        {"params": params, "cache": cache}, ids_BT, jnp.ones_like(ids_BT),
        jnp.broadcast_to(first + jnp.arange(ids_BT.shape[1]), ids_BT.shape), decode=True, mutable=["cache"]))
    first, updated = step(gpt2.init_cache(model, B, 4), ids[:, :2], 0)
    logits[implementation] = jnp.concatenate([first, step(updated["cache"], ids[:, 2:], 2)[0]], axis=1)
  np.testing.assert_allclose(logits["dot_product_attention"], logits["xla"], atol=1e-5, rtol=1e-5)


NO_MASK = attention.Mask()


def _resolve(implementation, on, dropout=False, bias=False, mask=NO_MASK, length=L, dtype=jnp.bfloat16, head_dim=64):
  return attention.resolve(implementation, mask, bias, dropout, length, length, head_dim, dtype, on)


def test_auto_takes_the_platforms_kernel_where_the_call_allows_it():
  assert _resolve("auto", "tpu") == "splash"
  assert _resolve("auto", "gpu") == "dot_product_attention"
  assert _resolve("auto", "cpu") == "xla"
  assert _resolve("auto", "tpu", dropout=True) == _resolve("auto", "gpu", dropout=True) == "xla"
  assert _resolve("auto", "tpu", bias=True) == "xla"  # T5's self-attention
  assert _resolve("auto", "tpu", mask=attention.Mask(full_BLS=_full())) == "xla"  # UniLM
  assert _resolve("auto", "tpu", length=114) == "xla"  # not a multiple of 128
  assert _resolve("auto", "gpu", dtype=jnp.float32) == "xla"  # cuDNN's kernel is half precision
  assert _resolve("auto", "gpu", length=1821) == "xla"  # cuDNN takes a mask (a bias to it) with even lengths only
  assert _resolve("auto", "tpu", mask=attention.Mask(causal=True, query_offset=jnp.int32(3))) == "xla"  # decoding
  assert _resolve("splash", "tpu", length=8) == "xla"  # an init trace's example inputs
  assert _resolve("splash", "tpu", mask=attention.Mask(causal=True, query_offset=jnp.int32(3))) == "xla"
  assert _resolve("dot_product_attention", "cpu", dtype=jnp.float32) == "dot_product_attention"


@pytest.mark.parametrize("implementation,kwargs,message", [
    ("splash", {"dropout": True}, "model.attention=splash has no dropout on the attention probabilities: set the "
                                  "model's attention dropout to 0"),
    ("dot_product_attention", {"dropout": True}, "model.attention=dot_product_attention has no dropout"),
    ("splash", {"bias": True}, "model.attention=splash takes no additive attention bias (T5's relative positions)"),
    ("splash", {"mask": attention.Mask(full_BLS=_full())}, "model.attention=splash takes no attention mask per "
                                                          "example (UniLM's)"),
    ("flash", {}, "model.attention must be one of xla, dot_product_attention, splash, auto, got 'flash'"),
])
def test_an_explicit_choice_the_call_cannot_take_is_one_clear_error(implementation, kwargs, message):
  with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
    _resolve(implementation, "tpu", **kwargs)


@pytest.mark.parametrize("name,attention_name,message", [
    ("bert_tiny", "flash", "model.attention must be one of xla, dot_product_attention, splash, auto, got 'flash'"),
    ("t5_tiny", "splash", "model.attention=splash: splash takes no additive bias, and T5's self-attention adds"),
    ("xlnet_tiny", "splash", "model.attention=splash: XLNet's two-stream relative attention has a core of its own"),
])
def test_config_refuses_what_the_family_cannot_take(name, attention_name, message):
  with pytest.raises(UserError, match="^" + message.replace("(", r"\(")):
    config_lib.load_config(name, (f"model.attention={attention_name}",))


def test_training_with_attention_dropout_refuses_a_fused_kernel_before_compiling():
  module, cfg = _family("bert_tiny", "splash")
  inputs = _family_inputs("bert_tiny", module, cfg)
  with pytest.raises(UserError, match="^model.attention=splash has no dropout"):
    jax.eval_shape(lambda: module.build(cfg, deterministic=False).init(
        {"params": jax.random.key(0), "dropout": jax.random.key(1)}, **inputs))


@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="the TPU compiler (libtpu, jax[tpu])")
@pytest.mark.parametrize("implementation,attention_dropout,kernel", [
    ("splash", 0.0, True), ("auto", 0.0, True), ("auto", 0.1, False)])
def test_a_deviceless_tpu_compile_lowers_splash_to_a_mosaic_kernel(implementation, attention_dropout, kernel):
  """BERT's attention block in training (forward and backward), compiled for a v5e 2x2 mesh that shards batch and
  heads; auto picks splash from the mesh's platform, and xla while attention dropout is on."""
  from jax.experimental import topologies

  devices = topologies.get_topology_desc(platform="tpu", topology_name="v5e:2x2").devices
  mesh = parallel.make_mesh({"dcn": 1, "data": 2, "fsdp": 1, "tensor": 2}, devices)
  block = attention.SelfAttention(4, 64, attention_dropout, dtype=jnp.bfloat16, implementation=implementation)
  x_BLD = jax.ShapeDtypeStruct((4, 2 * L, 256), jnp.bfloat16, sharding=NamedSharding(mesh, PartitionSpec("data")))
  key_mask_BS = jax.ShapeDtypeStruct((4, 2 * L), jnp.int32, sharding=NamedSharding(mesh, PartitionSpec("data")))
  params = jax.eval_shape(lambda x: block.init(jax.random.key(0), x, attention.padding(jnp.ones(x.shape[:2])), True),
                          x_BLD)["params"]
  params = jax.tree_util.tree_map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=NamedSharding(mesh, PartitionSpec())), params)

  def loss(params, x_BLD, key_mask_BS):
    y_BLD = block.apply({"params": params}, x_BLD, attention.padding(key_mask_BS), False,
                        rngs={"dropout": jax.random.key(1)})
    return jnp.mean(y_BLD.astype(jnp.float32) ** 2)

  with jax.set_mesh(mesh), nn.logical_axis_rules(parallel.DEFAULT_RULES):
    compiled = jax.jit(jax.grad(loss, (0, 1))).lower(params, x_BLD, key_mask_BS).compile()
  assert ('custom_call_target="tpu_custom_call"' in compiled.as_text()) == kernel
