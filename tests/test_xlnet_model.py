"""XLNet against Hugging Face's XLNetLMHeadModel (random weights, float32), layouts, conversion."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from bert_jax import convert, models
from bert_jax.models import xlnet

B, L, P, V = 4, 10, 3, 99


def hf_model(**overrides):
  config = transformers.XLNetConfig(vocab_size=V, d_model=32, n_layer=2, n_head=4, d_inner=64, dropout=0.0,
                                    mem_len=5, reuse_len=4, ff_activation="gelu", **overrides)
  torch.manual_seed(0)
  model = transformers.XLNetLMHeadModel(config).eval()
  with torch.no_grad():  # weights large enough that every term moves the logits; biases away from zero
    for name, p in model.named_parameters():
      if "layer_norm" in name:
        p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
      else:
        p.normal_(0.0, 0.3)
  return model


def random_inputs(seed: int):
  rng = np.random.default_rng(seed)
  positions = np.stack([np.sort(rng.choice(L, P, replace=False)) for _ in range(B)])
  target_mapping = np.zeros((B, P, L), np.float32)
  target_mapping[np.arange(B)[:, None], np.arange(P)[None], positions] = 1.0
  attention_mask = np.ones((B, L), np.int64)
  attention_mask[1, -3:] = 0
  return {"input_ids": rng.integers(0, V, (B, L)), "token_type_ids": rng.integers(0, 3, (B, L)),
          "attention_mask": attention_mask, "perm_mask": (rng.random((B, L, L)) < 0.4).astype(np.float32),
          "target_mapping": target_mapping}, positions


def convert_hf(model):
  state_dict = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  return convert.from_hf(state_dict, model.config.to_dict())


def run_hf(model, inputs, mems=None, targets=True):
  args = {k: torch.tensor(v) for k, v in inputs.items() if targets or k != "target_mapping"}
  with torch.no_grad():
    out = model(**args, mems=mems, use_mems=True)
  return out.logits.numpy(), out.mems


@functools.cache
def jitted_apply(cfg: xlnet.XLNetConfig):
  return jax.jit(xlnet.build(cfg).apply)


def run_ours(model_config, params, inputs, positions, mems=None, reversed_B=None, targets=True):
  apply = jitted_apply(models.make_config(model_config))
  return apply({"params": params}, jnp.asarray(inputs["input_ids"], jnp.int32),
               jnp.asarray(inputs["token_type_ids"], jnp.int32), jnp.asarray(inputs["attention_mask"]),
               jnp.asarray(inputs["perm_mask"]), jnp.asarray(positions) if targets else None, mems, reversed_B)


def hf_mems_YBMD(mems):
  return np.stack([m.numpy().transpose(1, 0, 2) for m in mems])


@pytest.fixture(scope="module")
def converted():
  model = hf_model()
  model_config, params = convert_hf(model)
  return model, model_config, params


def test_matches_hf_with_targets_and_memory(converted):
  hf, model_config, params = converted
  first, positions = random_inputs(1)
  second, positions2 = random_inputs(2)
  hf_logits, hf_mems = run_hf(hf, first)
  out = run_ours(model_config, params, first, positions)
  assert out["logits"].shape == (B, P, V)
  np.testing.assert_allclose(out["logits"], hf_logits, atol=1e-4, rtol=0)
  assert hf_mems_YBMD(hf_mems).shape == (2, B, 4, 32)  # reuse_len states of the first segment
  np.testing.assert_allclose(out["mems"], hf_mems_YBMD(hf_mems), atol=1e-5, rtol=0)
  hf_logits2, hf_mems2 = run_hf(hf, second, mems=hf_mems)
  out2 = run_ours(model_config, params, second, positions2, mems=out["mems"])
  np.testing.assert_allclose(out2["logits"], hf_logits2, atol=1e-4, rtol=0)
  assert out2["mems"].shape == (2, B, 5, 32)  # cut to mem_len
  np.testing.assert_allclose(out2["mems"], hf_mems_YBMD(hf_mems2), atol=1e-5, rtol=0)
  without_memory = run_hf(hf, second)[0]
  assert np.abs(without_memory - hf_logits2).max() > 0.1  # the memory matters


def test_matches_hf_content_stream_with_memory(converted):
  hf, model_config, params = converted
  first, _ = random_inputs(1)
  second, _ = random_inputs(2)
  hf_mems = run_hf(hf, first, targets=False)[1]
  hf_logits, _ = run_hf(hf, second, mems=hf_mems, targets=False)
  out = run_ours(model_config, params, second, None, mems=jnp.asarray(hf_mems_YBMD(hf_mems)), targets=False)
  assert out["logits"].shape == (B, L, V)
  np.testing.assert_allclose(out["logits"], hf_logits, atol=1e-4, rtol=0)


def test_backward_examples_and_clamped_distances_match_hf_bi_data(converted):
  _, model_config, params = converted
  hf = hf_model(bi_data=True, clamp_len=3)  # same seed, same weights; HF reads the 2nd half of a batch backwards
  inputs, positions = random_inputs(3)
  hf_logits, _ = run_hf(hf, inputs)
  model_config = model_config.copy_and_resolve_references()
  model_config.clamp_len = 3
  out = run_ours(model_config, params, inputs, positions, reversed_B=jnp.array([0, 0, 1, 1]))
  np.testing.assert_allclose(out["logits"], hf_logits, atol=1e-4, rtol=0)
  forward = run_ours(model_config, params, inputs, positions, reversed_B=jnp.zeros(4, jnp.int32))
  assert np.abs(forward["logits"][2:] - hf_logits[2:]).max() > 1e-3


def test_scanned_and_rematerialised_layers_give_the_same_outputs(converted):
  _, model_config, params = converted
  inputs, positions = random_inputs(2)
  mems = run_ours(model_config, params, *random_inputs(1))["mems"]
  reference = run_ours(model_config, params, inputs, positions, mems=mems)
  cfg = models.make_config(model_config)
  scanned = xlnet.to_layout(params, cfg, scanned=True)
  assert scanned["encoder"]["layers"]["attention"]["query"].shape == (2, 32, 4, 8)
  variant = model_config.copy_and_resolve_references()
  variant.update(scan_layers=True, remat="full")
  out = run_ours(variant, scanned, inputs, positions, mems=mems)
  np.testing.assert_allclose(out["logits"], reference["logits"], atol=1e-5, rtol=0)
  np.testing.assert_allclose(out["mems"], reference["mems"], atol=1e-6, rtol=0)
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(
      np.array_equal, xlnet.to_layout(scanned, cfg, scanned=False), params))


def test_export_round_trip_gives_hf_the_same_weights(converted):
  hf, model_config, params = converted
  hf_config, state_dict = convert.to_hf(model_config, params)
  expected = {k: v.detach().numpy() for k, v in hf.state_dict().items() if k != "lm_loss.weight"}
  assert set(state_dict) == set(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(state_dict[name], value, err_msg=name)
  reloaded = transformers.XLNetLMHeadModel(transformers.XLNetConfig(**hf_config)).eval()
  tensors = {k: torch.tensor(v) for k, v in state_dict.items()}
  missing, unexpected = reloaded.load_state_dict(tensors, strict=False)
  assert unexpected == [] and set(missing) <= {"lm_loss.weight"}
  reloaded.tie_weights()
  inputs, _ = random_inputs(5)
  np.testing.assert_allclose(run_hf(reloaded, inputs)[0], run_hf(hf, inputs)[0], atol=1e-5)
