"""BART model: parity with transformers' BartForConditionalGeneration (padded), export and re-import, scan/remat,
axis names, exact parameter counts."""

import functools

from flax import traverse_util
import flax.linen as nn
import jax
import numpy as np
import pytest
import torch
import transformers

from bert_jax import config as config_lib, convert, params as params_lib
from bert_jax.convert import weights
from bert_jax.models import bart

# Small sizes with different encoder and decoder shapes; positions for 40 tokens.
SMALL = {"vocab_size": 96, "d_model": 32, "encoder_layers": 2, "decoder_layers": 3, "encoder_attention_heads": 4,
         "decoder_attention_heads": 2, "encoder_ffn_dim": 48, "decoder_ffn_dim": 40, "max_position_embeddings": 40,
         "dropout": 0.0}


def hf_model(**overrides) -> transformers.BartForConditionalGeneration:
  torch.manual_seed(0)
  model = transformers.BartForConditionalGeneration(transformers.BartConfig(**{**SMALL, **overrides})).eval()
  with torch.no_grad():  # LayerNorms away from their initial ones and zeros, so a misplaced one shows
    for name, p in model.named_parameters():
      if "layer_norm" in name or "layernorm" in name:
        p.add_(torch.randn_like(p) * 0.2)
  return model


def hf_state(model) -> dict:
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def padded_batch(rng: np.random.Generator):
  enc = rng.integers(3, 96, (3, 40)).astype(np.int32)
  dec = rng.integers(3, 96, (3, 17)).astype(np.int32)
  dec[:, 0] = 2  # the decoder start token, </s>
  enc_mask = (np.arange(40)[None] < np.array([[40], [23], [9]])).astype(np.int32)
  dec_mask = (np.arange(17)[None] < np.array([[17], [11], [4]])).astype(np.int32)
  return enc * enc_mask + (1 - enc_mask), enc_mask, dec * dec_mask + (1 - dec_mask), dec_mask  # padded with id 1


def hf_logits(model, enc, enc_mask, dec, dec_mask) -> np.ndarray:
  tensor = lambda x: torch.tensor(x, dtype=torch.long)
  with torch.no_grad():
    return model(input_ids=tensor(enc), attention_mask=tensor(enc_mask), decoder_input_ids=tensor(dec),
                 decoder_attention_mask=tensor(dec_mask)).logits.numpy()


@functools.cache
def jitted_apply(cfg: bart.BartConfig):
  return jax.jit(bart.build(cfg).apply)


def our_logits(model_config, params, enc, enc_mask, dec, dec_mask) -> np.ndarray:
  apply = jitted_apply(bart.make_config(model_config))
  return np.asarray(apply({"params": params}, enc, dec, enc_mask, dec_mask))


@pytest.mark.parametrize("overrides", [{}, {"scale_embedding": True, "activation_function": "relu"}])
def test_parity_with_transformers_padded(overrides):
  model = hf_model(**overrides)
  model_config, params = convert.from_hf(hf_state(model), model.config.to_dict())
  assert model_config.scale_embedding == overrides.get("scale_embedding", False)
  batch = padded_batch(np.random.default_rng(1))
  expected, ours = hf_logits(model, *batch), our_logits(model_config, params, *batch)
  valid = batch[3].astype(bool)
  assert np.abs(expected[valid]).max() > 0.5  # logits of a real size, not vanishing
  np.testing.assert_allclose(ours[valid], expected[valid], atol=1e-4, rtol=0)


def test_padding_changes_nothing_for_the_real_tokens():
  """Row 1 of the padded batch alone, cut to its real length, gives the same logits."""
  model = hf_model()
  model_config, params = convert.from_hf(hf_state(model), model.config.to_dict())
  enc, enc_mask, dec, dec_mask = padded_batch(np.random.default_rng(4))
  padded = our_logits(model_config, params, enc, enc_mask, dec, dec_mask)[1, :11]
  alone = our_logits(model_config, params, enc[1:2, :23], enc_mask[1:2, :23], dec[1:2, :11], dec_mask[1:2, :11])[0]
  np.testing.assert_allclose(padded, alone, atol=1e-5, rtol=0)


def test_export_loads_in_transformers_and_round_trips(tmp_path):
  model = hf_model()
  model_config, params = convert.from_hf(hf_state(model), model.config.to_dict())
  hf_config, state_dict = convert.to_hf(model_config, params)
  weights.write_hf_dir(tmp_path, hf_config, state_dict)
  reloaded, info = transformers.BartForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  reloaded = reloaded.eval()
  assert reloaded.lm_head.weight is reloaded.model.shared.weight
  batch = padded_batch(np.random.default_rng(2))
  valid = batch[3].astype(bool)
  np.testing.assert_allclose(our_logits(model_config, params, *batch)[valid], hf_logits(reloaded, *batch)[valid],
                             atol=1e-4, rtol=0)
  model_config_back, params_back = convert.from_hf(state_dict, hf_config)
  assert model_config_back.to_dict() == model_config.to_dict()
  jax.tree_util.tree_map(np.testing.assert_array_equal, params_back, params)


def test_nonzero_final_logits_bias_is_refused():
  model = hf_model()
  state = hf_state(model)
  state["final_logits_bias"][0, 5] = 1.0
  with pytest.raises(config_lib.UserError, match="final_logits_bias"):
    convert.from_hf(state, model.config.to_dict())


def test_scan_and_remat_give_the_same_logits():
  model = hf_model()
  model_config, params = convert.from_hf(hf_state(model), model.config.to_dict())
  scanned_config = model_config.copy_and_resolve_references()
  scanned_config.update(scan_layers=True, remat="dots")
  cfg = bart.make_config(scanned_config)
  scanned_params = bart.to_layout(params, cfg, scanned=True)
  assert scanned_params["decoder"]["layers"]["fc1"]["kernel"].shape == (3, 32, 40)
  batch = padded_batch(np.random.default_rng(7))
  valid = batch[3].astype(bool)
  np.testing.assert_allclose(our_logits(scanned_config, scanned_params, *batch)[valid],
                             our_logits(model_config, params, *batch)[valid], atol=1e-5, rtol=0)
  jax.tree_util.tree_map(np.testing.assert_array_equal, bart.to_layout(scanned_params, cfg, scanned=False), params)


@pytest.mark.parametrize("scan", [False, True])
def test_every_parameter_has_logical_axis_names(scan):
  cfg = bart.BartConfig(vocab_size=96, hidden_size=32, num_layers=2, num_decoder_layers=3, num_heads=4,
                        num_decoder_heads=2, intermediate_size=48, decoder_intermediate_size=40, max_position=40,
                        dropout=0.0, scan_layers=scan)  # SMALL under our names
  boxed = jax.eval_shape(lambda: bart.build(cfg).init(jax.random.key(0), **bart.example_inputs(cfg)))["params"]
  known = {"vocab", "embed", "heads", "kv", "mlp", "layers", None}
  for path, leaf in traverse_util.flatten_dict(boxed).items():
    assert isinstance(leaf, nn.LogicallyPartitioned), path
    assert len(leaf.names) == leaf.value.ndim and set(leaf.names) <= known, (path, leaf.names)
    assert (leaf.names[0] == "layers") == ("layers" in path), path  # scanned stacks: a leading layers axis


EXACT = {"bart_base": 139_420_416, "bart_large": 406_291_456}  # transformers' num_parameters()


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_counts(name):
  counts = params_lib.count_model(config_lib.load_config(name, ["model.scan_layers=True"]).model)
  assert counts["total"] == EXACT[name] and "encoder" not in counts


def test_counts_equal_transformers_for_the_same_config():
  """The tiny config's count against transformers' own count of the same sizes (built on the meta device)."""
  model_config = config_lib.load_config("bart_tiny").model
  zeros = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, x.dtype), params_lib.abstract(model_config))
  hf_config, _ = convert.to_hf(model_config, zeros)
  with torch.device("meta"):
    model = transformers.BartForConditionalGeneration(transformers.BartConfig(**hf_config))
  assert params_lib.count_model(model_config)["total"] == model.num_parameters()


@pytest.mark.parametrize("override,message", [
    ("model.num_heads=5", "num_heads"),
    ("model.hidden_act=swish", "hidden_act"),
    ("model.head=regression", "head"),
])
def test_bad_model_settings_are_user_errors(override, message):
  with pytest.raises(config_lib.UserError, match=message):
    config_lib.load_config("bart_tiny", [override])
