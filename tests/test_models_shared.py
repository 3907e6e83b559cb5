"""The steps every model family shares (bert_jax/models/shared.py), on a toy family: settings and their
checks, the layer stack scanned or looped, rematerialised or not, and the layout conversion between them."""

import dataclasses
import json
import re

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import models
from bert_jax.errors import UserError
from bert_jax.models import layers, shared, t5


@dataclasses.dataclass(frozen=True)
class ToyConfig(shared.Settings):
  width: int = 4
  num_layers: int = 3
  num_heads: int = 2
  dropout: float = 0.0
  act: str = "relu"


class ToyLayer(nn.Module):
  cfg: ToyConfig
  deterministic: bool

  @nn.compact
  def __call__(self, x_BD, scale):
    y_BD = layers.dense(self.cfg.width, ("embed", "mlp"), 0.5, self.cfg.compute_dtype, "dense")(x_BD)
    return x_BD + layers.activation(self.cfg.act)(y_BD) * scale, None


class ToyStack(nn.Module):
  cfg: ToyConfig

  @nn.compact
  def __call__(self, x_BD):
    for layer in shared.layer_stack(ToyLayer, self.cfg, True, self.cfg.num_layers, (nn.broadcast,)):
      x_BD, _ = layer(x_BD, 0.5)
    return x_BD


def _layout(cfg: ToyConfig) -> dict:
  return {"layers": [f"layers_{k}" for k in range(cfg.num_layers)]}


def _init(cfg: ToyConfig, x_BD):
  return ToyStack(cfg).init(jax.random.key(0), x_BD)["params"]


def test_scanned_and_looped_stacks_hold_the_same_parameters_and_give_the_same_outputs():
  x_BD = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4)), jnp.float32)
  looped_cfg, scanned_cfg = ToyConfig(), ToyConfig(scan_layers=True, remat="dots")
  boxed = jax.eval_shape(lambda: _init(scanned_cfg, x_BD))
  assert boxed["layers"]["dense"]["kernel"].names == ("layers", "embed", "mlp")
  assert boxed["layers"]["dense"]["kernel"].value.shape == (3, 4, 4)
  looped = nn.unbox(_init(looped_cfg, x_BD))
  assert sorted(looped) == ["layers_0", "layers_1", "layers_2"]
  scanned = shared.to_layout(looped, _layout(looped_cfg), scanned=True)
  assert jax.tree_util.tree_map(np.shape, scanned) == jax.tree_util.tree_map(np.shape, nn.unbox(boxed))
  want = ToyStack(looped_cfg).apply({"params": looped}, x_BD)
  np.testing.assert_allclose(ToyStack(scanned_cfg).apply({"params": scanned}, x_BD), want, atol=1e-6, rtol=0)
  back = shared.to_layout(scanned, _layout(looped_cfg), scanned=False)
  jax.tree_util.tree_map(np.testing.assert_array_equal, back, looped)


def test_to_layout_moves_broadcast_subtrees_prunes_what_it_empties_and_leaves_a_done_layout_alone():
  params = flax.core.freeze({"encoder": {"attention_0": {"w": np.ones(2)}, "ffn_0": {"w": np.zeros(3)}},
                             "head": {"b": np.ones(1)}})
  stacks = {f"encoder/layers_0/{b}": f"encoder/{b}_0" for b in ("attention", "ffn")}
  scanned = shared.to_layout(params, stacks, scanned=True)
  assert jax.tree_util.tree_map(np.shape, scanned) == {
      "encoder": {"layers_0": {"attention": {"w": (2,)}, "ffn": {"w": (3,)}}}, "head": {"b": (1,)}}
  assert shared.to_layout(scanned, stacks, scanned=True) == scanned
  back = shared.to_layout(scanned, stacks, scanned=False)
  assert jax.tree_util.tree_map(np.shape, back) == jax.tree_util.tree_map(np.shape, flax.core.unfreeze(params))


@pytest.mark.parametrize("changes,message", [
    ({"width": 0}, "model.width must be a positive integer, got 0"),
    ({"width": True}, "model.width must be a positive integer, got True"),
    ({"width": 5}, "model.width=5 is not divisible by model.num_heads=2"),
    ({"act": "swish"}, "model.act must be one of gelu, gelu_new, relu, tanh, got 'swish'"),
    ({"dropout": 1.0}, "model.dropout must be in [0, 1), got 1.0"),
    ({"remat": "some"}, "model.remat must be none or one of full, dots, dots_no_batch, got 'some'"),
    ({"dtype": "float33"}, "model.dtype must name a dtype"),
])
def test_check_says_what_is_wrong_in_one_line(changes, message):
  cfg = dataclasses.replace(ToyConfig(), **changes)
  with pytest.raises(UserError) as error:
    shared.check(cfg, ("width", "num_layers"), divisible=[("width", "num_heads")], choices={"act": layers.ACTIVATIONS})
  assert message in str(error.value)


def test_settings_from_config_refuse_unknown_keys():
  assert shared.from_config(ToyConfig, {"family": "toy", "width": 8}, "toy") == ToyConfig(width=8)
  with pytest.raises(UserError, match="unknown model keys for the toy family: depth"):
    shared.from_config(ToyConfig, {"depth": 3}, "toy")


@dataclasses.dataclass(frozen=True)
class RenamedToyConfig(ToyConfig):
  FORMER_NAMES = {"d_model": "width"}


def test_settings_from_config_read_former_names_as_todays():
  assert shared.from_config(RenamedToyConfig, {"d_model": 8}, "toy") == RenamedToyConfig(width=8)
  with pytest.raises(UserError, match=r"^model.d_model and model.width are one setting .*keep only model.width$"):
    shared.from_config(RenamedToyConfig, {"d_model": 8, "width": 8}, "toy")


# The sizes every family has, under one name each (BERT's; so are max_position, hidden_act, initializer_range where a
# family has them: T5 has a feed_forward_proj and initializes from its sizes), and the names families used before
# (issue 35), Hugging Face's among them: those stay in the converters' hf_config dicts.
SHARED_NAMES = {"hidden_size", "num_layers", "num_heads", "intermediate_size"}
FORMER_NAMES = {"d_model", "d_ff", "d_kv", "d_inner", "d_head", "n_embd", "n_layer", "n_head", "n_inner",
                "n_positions", "num_hidden_layers", "num_attention_heads", "encoder_attention_heads",
                "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "max_position_embeddings",
                "activation_function", "init_std", "layer_norm_epsilon", "dropout_rate", "hidden_dropout_prob",
                "attention_probs_dropout_prob"}


@pytest.mark.parametrize("name", sorted(models.FAMILIES))
def test_every_familys_settings_use_the_shared_names(name):
  cls = type(models.family({"family": name}).make_config({}))
  fields = {f.name for f in dataclasses.fields(cls)}
  assert not fields & FORMER_NAMES, sorted(fields & FORMER_NAMES)
  assert SHARED_NAMES <= fields
  assert set(cls.FORMER_NAMES.values()) <= fields and not set(cls.FORMER_NAMES) & fields


@pytest.mark.parametrize("config_name", ["t5_tiny", "bart_tiny"])
def test_a_run_saved_with_former_names_loads_to_the_same_settings(config_name, tmp_path):
  """A W/config.json written before issue 35 (T5's d_model, d_kv, d_ff; BART's transformers names) loads as today's
  config does, for evaluate, predict and finetune (config_lib.load_config of the run's config.json)."""
  from bert_jax import config as config_lib

  config = config_lib.load_config(config_name)
  former = {today: name for name, today in models.family(config.model).make_config({}).FORMER_NAMES.items()}
  saved = config.to_dict()
  saved["model"] = {former.get(key, key): value for key, value in saved["model"].items()}
  assert set(former.values()) <= set(saved["model"]) and not set(former) & set(saved["model"])
  path = tmp_path / "config.json"
  path.write_text(json.dumps(saved, default=list))
  loaded = config_lib.load_config(str(path))
  assert models.make_config(loaded.model) == models.make_config(config.model)
  assert models.make_config(dict(saved["model"])) == models.make_config(config.model)


@pytest.mark.parametrize("name", sorted(models.FAMILIES))
def test_a_familys_default_config_is_its_dataclass(name):
  model = models.default_config(name, num_layers=3)
  settings = models.make_config(model)
  assert settings == dataclasses.replace(models.family(model).make_config({}), num_layers=3)
  assert model.to_dict() == {"family": name, **dataclasses.asdict(settings)}


EINSUMS = [
    ("bld,df->blf", (2, 5, 3), (3, 4)),  # nn.Dense
    ("bld,dnk->blnk", (2, 5, 3), (3, 2, 4)),  # a projection into heads
    ("blnk,nkd->bld", (2, 5, 2, 4), (2, 4, 3)),  # heads back to the model width
    ("bqhk,bshk->bhqs", (2, 5, 3, 4), (2, 6, 3, 4)),  # attention logits
    ("bhqs,bshk->bqhk", (2, 3, 5, 6), (2, 6, 3, 4)),  # attention output
    ("bld,vd->blv", (2, 5, 3), (7, 3)),  # a tied output layer
    ("bqnk,snk->bnqs", (2, 5, 3, 4), (2, 3, 4)),  # XLNet's segment term
]


@pytest.mark.parametrize("spec, x_shape, y_shape", EINSUMS)
def test_dot_general_has_lax_values_and_gradients(spec, x_shape, y_shape):
  rng = np.random.default_rng(0)
  x, y = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in (x_shape, y_shape))
  weights = jnp.asarray(rng.standard_normal(jnp.einsum(spec, x, y).shape), jnp.float32)
  ours = jax.value_and_grad(lambda x, y: (layers.einsum(spec, x, y) * weights).sum(), (0, 1))
  lax = jax.value_and_grad(lambda x, y: (jnp.einsum(spec, x, y) * weights).sum(), (0, 1))
  (value, grads), (want, want_grads) = ours(x, y), lax(x, y)
  np.testing.assert_allclose(value, want, rtol=1e-5)
  for got, expected in zip(grads, want_grads):
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec, x_shape, y_shape", EINSUMS)
def test_bfloat16_dots_multiply_into_float32_forward_and_backward(spec, x_shape, y_shape):
  rng = np.random.default_rng(1)
  x, y = (jnp.asarray(rng.standard_normal(s), jnp.float32) for s in (x_shape, y_shape))
  weights = jnp.asarray(rng.standard_normal(jnp.einsum(spec, x, y).shape), jnp.float32)
  loss = lambda x, y: (layers.einsum(spec, x, y).astype(jnp.float32) * weights).sum()
  grad = jax.jit(jax.grad(loss, (0, 1)))
  x16, y16 = x.astype(jnp.bfloat16), y.astype(jnp.bfloat16)
  for got, want in zip(grad(x16, y16), jax.grad(loss, (0, 1))(x16.astype(jnp.float32), y16.astype(jnp.float32))):
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(got.astype(jnp.float32), want, atol=0.02 * float(jnp.abs(want).max()))
  dots = re.findall(r"dot_general.*", jax.jit(jax.value_and_grad(loss, (0, 1))).lower(x16, y16).as_text())
  assert len(dots) == 3  # forward, and one for each operand's gradient
  # With batch dimensions (attention) the operands are converted to float32, as XLA:CPU does for a bfloat16 product.
  (x_axes, y_axes), out_axes = (part.split(",") for part in spec.split("->"))
  operands = "f32" if set(x_axes) & set(y_axes) & set(out_axes[0]) else "bf16"
  assert all(re.search(rf"tensor<[\dx]*{operands}>, tensor<[\dx]*{operands}>\) -> tensor<[\dx]*f32>", d)
             for d in dots), dots


def test_dot_general_gives_a_kernel_gradient_in_the_kernel_layout():
  x, kernel = jnp.ones((4, 8, 6)), jnp.ones((6, 2, 3))
  dims = (((2,), (0,)), ((), ()))
  hlo = jax.jit(jax.grad(lambda k: layers.dot_general(x, k, dims).sum())).lower(kernel).as_text()
  assert "transpose" not in hlo  # JAX's own rule computes dy^T . x and transposes it
  hlo = jax.jit(jax.grad(lambda k: jax.lax.dot_general(x, k, dims).sum())).lower(kernel).as_text()
  assert "transpose" in hlo


def test_a_kernel_gradient_over_batch_and_length_copies_no_activations_on_the_cpu():
  x, kernel = jnp.ones((8, 16, 32)), jnp.ones((32, 64))
  dims = (((2,), (0,)), ((), ()))

  def transposing_copies() -> list[str]:
    loss = lambda kernel, x: jnp.square(layers.dot_general(x, kernel, dims)).sum()
    hlo = jax.jit(jax.grad(loss)).lower(kernel, x).compile().as_text()
    return re.findall(r"= (\S+) (?:transpose|copy)\(", hlo)

  assert transposing_copies() == []  # the product of x as a [128, 32] matrix with dy as [128, 64]
  with pytest.MonkeyPatch.context() as patch:  # over the two axes, XLA:CPU lays x out as [32, 8, 16] first
    patch.setattr(layers, "_as_matrices", lambda *args: None)
    assert "f32[32,8,16]{2,1,0}" in transposing_copies()


def _with_parameters(module: nn.Module, x):
  params = module.init(jax.random.key(0), x)
  return lambda x: module.apply(params, x)


RECOMPUTED_STEPS = {
    "gelu": lambda x: layers.activation("gelu"),
    "gelu_new": lambda x: layers.activation("gelu_new"),
    "layer_norm": lambda x: _with_parameters(layers.layer_norm(1e-12, jnp.float32, "layer_norm"), x),
    "t5_rms_norm": lambda x: _with_parameters(t5.RMSNorm(t5.T5Config()), x),
}


@pytest.mark.parametrize("name", sorted(RECOMPUTED_STEPS))
def test_gelu_and_the_norms_keep_only_their_input_for_the_backward_pass(name):
  x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 8, 16)), jnp.float32)
  dy = jnp.asarray(np.random.default_rng(1).standard_normal((4, 8, 16)), jnp.float32)

  def run():
    y, vjp = jax.vjp(RECOMPUTED_STEPS[name](x), x)
    kept = [leaf.shape for leaf in jax.tree.leaves(vjp) if np.size(leaf) >= x.size]
    return y, vjp(dy)[0], kept

  y, dx, kept = run()
  assert kept == [x.shape]  # the input: the backward pass recomputes the rest from it
  with pytest.MonkeyPatch.context() as patch:  # what JAX's autodiff keeps without `recomputed`
    patch.setattr(layers, "recomputed", lambda fn: fn)
    patch.setattr(layers, "recomputed_module", lambda module_cls: module_cls)
    y_kept, dx_kept, kept = run()
  assert len(kept) > 1  # what JAX keeps itself: intermediates of the input's size besides (or instead of) it
  np.testing.assert_allclose(y, y_kept, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(dx, dx_kept, rtol=1e-5, atol=1e-6)


def test_a_bfloat16_dense_layer_reads_and_differentiates_its_float32_kernel():
  layer = layers.dense(16, ("embed", "mlp"), 0.02, jnp.bfloat16, "dense")
  x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 8, 32)), jnp.bfloat16)
  params = nn.meta.unbox(layer.init(jax.random.key(0), x)["params"])
  loss = lambda p: layer.apply({"params": p}, x).astype(jnp.float32).sum()
  grads = jax.grad(loss)(params)
  # The kernel is cast inside the product: its gradient is the float32 product's, not rounded to bfloat16 first.
  kernel_grad = np.asarray(grads["kernel"])
  assert kernel_grad.dtype == np.float32
  assert (kernel_grad != np.asarray(jnp.asarray(kernel_grad).astype(jnp.bfloat16).astype(jnp.float32))).any()
  np.testing.assert_allclose(kernel_grad, np.asarray(x, np.float32).sum((0, 1))[:, None] * np.ones(16), rtol=1e-2)
