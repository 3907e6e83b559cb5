"""BERT-family model invariants: scanned == looped layers, remat changes nothing, gathered MLM logits."""

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import config as config_lib, models, params as params_lib
from bert_jax.models import bert

SMALL = ("model.vocab_size=128", "model.hidden_size=32", "model.intermediate_size=48",
         "model.max_position=16")


# Tiny graphs: XLA's expensive CPU passes would cost more than running them.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _run(fn, *args):
  return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)


def _model_config(name: str, *overrides: str):
  return config_lib.load_config(name, SMALL + overrides).model


def _inputs() -> dict:
  rng = np.random.default_rng(0)
  mask = (np.arange(8)[None] < np.array([[8], [5]])).astype(np.int32)
  return {"input_ids_BL": jnp.asarray(rng.integers(2, 128, (2, 8)) * mask, jnp.int32),
          "token_type_ids_BL": jnp.asarray((np.arange(8)[None] >= 3) * mask, jnp.int32),
          "attention_mask_BL": jnp.asarray(mask)}


def _abstract(model_config) -> dict:
  return params_lib.abstract_params(models.build_model(model_config), _inputs())


def _random_params(model_config) -> dict:
  """Every parameter random (LayerNorm scales and biases included), without compiling an init."""
  rng = np.random.default_rng(1)
  abstract = _abstract(model_config)
  return jax.tree_util.tree_map(lambda s: rng.normal(0.0, 0.2, s.shape).astype(np.float32), abstract)


def _apply(model_config, params: dict, **kwargs) -> dict:
  return models.build_model(model_config).apply({"params": params}, **_inputs(), **kwargs)


def _shapes(tree: dict) -> dict:
  return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(tree, sep="/").items()}


@pytest.mark.parametrize("name", ["bert_tiny", "albert_tiny"])
def test_scanned_layers_equal_looped_layers(name):
  looped_config, scanned_config = _model_config(name), _model_config(name, "model.scan_layers=True")
  params = _random_params(looped_config)
  scanned_params = bert.to_layout(params, bert.make_config(scanned_config), scanned=True)
  assert _shapes(scanned_params) == _shapes(_abstract(scanned_config)) != _shapes(params)
  assert params_lib.count(scanned_params) == params_lib.count(params)
  looped, scanned = _run(lambda p, q: (_apply(looped_config, p), _apply(scanned_config, q)),
                         params, scanned_params)
  for key in looped:
    np.testing.assert_allclose(scanned[key], looped[key], atol=1e-5, rtol=0, err_msg=key)
  back = bert.to_layout(scanned_params, bert.make_config(looped_config), scanned=False)
  flat_back, flat = traverse_util.flatten_dict(back), traverse_util.flatten_dict(params)
  assert flat_back.keys() == flat.keys()
  for key in flat:
    np.testing.assert_array_equal(flat_back[key], flat[key])


@pytest.mark.parametrize("overrides", [("model.remat=full",), ("model.remat=dots", "model.scan_layers=True")])
def test_remat_changes_neither_outputs_nor_gradients(overrides):
  plain_config = _model_config("bert_tiny", *[o for o in overrides if "remat" not in o])
  remat_config = _model_config("bert_tiny", *overrides)
  assert _shapes(_abstract(remat_config)) == _shapes(_abstract(plain_config))
  params = _random_params(plain_config)

  def loss(model_config, p):
    outputs = _apply(model_config, p)
    return jnp.sum(outputs["mlm_logits"] ** 2) + jnp.sum(outputs["sentence_logits"] ** 2)

  (plain_loss, plain_grads), (remat_loss, remat_grads) = _run(lambda p: (
      jax.value_and_grad(lambda q: loss(plain_config, q))(p),
      jax.value_and_grad(lambda q: loss(remat_config, q))(p)), params)
  np.testing.assert_allclose(remat_loss, plain_loss, rtol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(remat_grads), jax.tree_util.tree_leaves(plain_grads)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_gathered_mlm_logits_equal_full_logits():
  model_config = _model_config("albert_tiny")  # E != H: the head projects back to E before the tied decoder
  positions_BP = jnp.asarray([[0, 3, 7], [1, 2, 4]], jnp.int32)
  full_BLV, gathered_BPV = _run(lambda p: (
      _apply(model_config, p)["mlm_logits"],
      _apply(model_config, p, masked_positions_BP=positions_BP)["mlm_logits"]), _random_params(model_config))
  assert gathered_BPV.shape == (2, 3, 128)
  np.testing.assert_allclose(gathered_BPV, jnp.take_along_axis(full_BLV, positions_BP[..., None], axis=1),
                             atol=1e-5, rtol=0)
