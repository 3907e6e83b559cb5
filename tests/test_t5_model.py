"""T5 model: parity with transformers (v1.0 and v1.1, padded), packing, scan/remat, axis names, counts."""

import functools

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from bert_jax import config as config_lib, convert, params as params_lib
from bert_jax.convert import weights
from bert_jax.models import t5
from bert_jax.objectives import span_corruption
from bert_jax.objectives.span_corruption import decoder_inputs

VERSIONS = {
    "v1_0": dict(feed_forward_proj="relu", tie_word_embeddings=True),
    "v1_1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}
# Small sizes; max_distance 20 puts the 40-token inputs in the logarithmic and the last buckets.
SMALL = dict(vocab_size=96, hidden_size=32, head_dim=8, intermediate_size=48, num_layers=2, num_decoder_layers=3,
             num_heads=4, relative_attention_num_buckets=16, relative_attention_max_distance=20, dropout=0.0)


def hf_model(version: str) -> transformers.T5ForConditionalGeneration:
  torch.manual_seed(0)
  hf_config = transformers.T5Config(
      vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=4,
      relative_attention_num_buckets=16, relative_attention_max_distance=20, dropout_rate=0.0,
      decoder_start_token_id=0, **VERSIONS[version])
  model = transformers.T5ForConditionalGeneration(hf_config).eval()
  if not VERSIONS[version]["tie_word_embeddings"]:  # transformers ties lm_head at construction; v1.1 is untied
    model.lm_head.weight = torch.nn.Parameter(torch.randn(96, 32) * 32 ** -0.5)
  return model


def padded_batch(rng: np.random.Generator):
  enc = rng.integers(2, 96, (3, 40)).astype(np.int32)
  dec = rng.integers(2, 96, (3, 17)).astype(np.int32)
  dec[:, 0] = 0  # the start token
  enc_mask = (np.arange(40)[None] < np.array([[40], [23], [9]])).astype(np.int32)
  dec_mask = (np.arange(17)[None] < np.array([[17], [11], [4]])).astype(np.int32)
  return enc * enc_mask, enc_mask, dec * dec_mask, dec_mask


def hf_logits(model, enc, enc_mask, dec, dec_mask) -> np.ndarray:
  tensor = lambda x: torch.tensor(x, dtype=torch.long)
  with torch.no_grad():
    return model(input_ids=tensor(enc), attention_mask=tensor(enc_mask), decoder_input_ids=tensor(dec),
                 decoder_attention_mask=tensor(dec_mask)).logits.numpy()


@functools.cache
def jitted_apply(cfg: t5.T5Config):
  return jax.jit(t5.build(cfg).apply)


def our_logits(model_config, params, enc, enc_mask, dec, dec_mask) -> np.ndarray:
  apply = jitted_apply(t5.make_config(model_config))
  return np.asarray(apply({"params": params}, enc, dec, enc_mask, dec_mask))


def random_params(version: str) -> tuple:
  """(model config, params) converted from a randomly initialized transformers model (no XLA compile)."""
  model = hf_model(version)
  return convert.from_hf(hf_state(model), model.config.to_dict())


def hf_state(model) -> dict:
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def test_relative_position_buckets_match_transformers():
  relative = np.arange(-300, 301)[None]
  for bidirectional in (True, False):
    for buckets, distance in ((32, 128), (16, 20)):
      expected = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
          torch.tensor(relative), bidirectional, buckets, distance).numpy()
      ours = t5.relative_position_bucket(jnp.asarray(relative), bidirectional, buckets, distance)
      np.testing.assert_array_equal(np.asarray(ours), expected)


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_parity_with_transformers_padded(version):
  model = hf_model(version)
  model_config, params = convert.from_hf(hf_state(model), model.config.to_dict())
  assert model_config.tie_word_embeddings == VERSIONS[version]["tie_word_embeddings"]
  batch = padded_batch(np.random.default_rng(1))
  expected, ours = hf_logits(model, *batch), our_logits(model_config, params, *batch)
  valid = batch[3].astype(bool)
  assert np.abs(expected[valid]).max() > 0.5  # logits of a real size, not vanishing
  np.testing.assert_allclose(ours[valid], expected[valid], atol=1e-4, rtol=0)


def test_v1_1_float32_error_is_the_rounding_of_its_logits_scale():
  """v1.1's untied head is unscaled: with transformers' initialization (head std 1) the logits grow as sqrt(d_model)
  (here about 70), and float32 rounds both implementations away from the float64 result by a few eps of that scale
  (3-4e-5 here, near 1e-4 at d_model 256). So each is held to that: ours no farther from transformers' float64
  logits than transformers' own float32 logits are (with a margin), and within 1e-6 of the logits' scale."""
  torch.manual_seed(0)
  hf_config = transformers.T5Config(vocab_size=256, d_model=128, d_kv=32, d_ff=256, num_layers=4, num_decoder_layers=4,
                                    num_heads=4, dropout_rate=0.0, decoder_start_token_id=0, **VERSIONS["v1_1"])
  model = transformers.T5ForConditionalGeneration(hf_config).eval()
  model_config, params = convert.from_hf(hf_state(model), model.config.to_dict())
  batch = padded_batch(np.random.default_rng(2))
  valid = batch[3].astype(bool)
  ours, hf32 = our_logits(model_config, params, *batch)[valid], hf_logits(model, *batch)[valid]
  hf64 = hf_logits(model.double(), *batch)[valid]
  scale = np.abs(hf64).max()
  assert scale > 40
  ours_error, hf_error = np.abs(ours - hf64).max(), np.abs(hf32 - hf64).max()
  assert ours_error <= 1.5 * hf_error and ours_error <= 1e-6 * scale, (ours_error, hf_error, scale)


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_export_reloads_in_transformers(version, tmp_path):
  model_config, params = random_params(version)
  hf_config, state_dict = convert.to_hf(model_config, params)
  weights.write_hf_dir(tmp_path, hf_config, state_dict)
  reloaded = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path).eval()
  assert (reloaded.lm_head.weight is reloaded.shared.weight) == VERSIONS[version]["tie_word_embeddings"]
  batch = padded_batch(np.random.default_rng(2))
  valid = batch[3].astype(bool)
  np.testing.assert_allclose(our_logits(model_config, params, *batch)[valid],
                             hf_logits(reloaded, *batch)[valid], atol=1e-4, rtol=0)
  model_config_back, params_back = convert.from_hf(state_dict, hf_config)
  assert model_config_back.to_dict() == model_config.to_dict()
  jax.tree_util.tree_map(np.testing.assert_array_equal, params_back, params)


def test_unscaled_output_through_the_shared_embedding_imports(tmp_path):
  """transformers 5 reads tie_word_embeddings=False as "no output scaling" and still ties lm_head to the
  shared embedding; save_pretrained then leaves lm_head.weight out. The import uses the embedding as the head."""
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(
      vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=4,
      relative_attention_num_buckets=16, relative_attention_max_distance=20, dropout_rate=0.0,
      decoder_start_token_id=0, feed_forward_proj="gated-gelu", tie_word_embeddings=False)).eval()
  assert model.lm_head.weight is model.shared.weight and not model.config.scale_decoder_outputs
  model.save_pretrained(tmp_path)
  state_dict, hf_config = weights.read_hf_dir(tmp_path)
  assert "lm_head.weight" not in state_dict
  model_config, params = convert.from_hf(state_dict, hf_config)
  assert not model_config.tie_word_embeddings
  np.testing.assert_array_equal(params["decoder"]["logits_dense"]["kernel"], state_dict["shared.weight"].T)
  batch = padded_batch(np.random.default_rng(3))
  valid = batch[3].astype(bool)
  expected = hf_logits(model, *batch)
  assert np.abs(expected[valid]).max() > 0.5
  np.testing.assert_allclose(our_logits(model_config, params, *batch)[valid], expected[valid], atol=1e-4, rtol=0)


def test_packed_rows_give_each_example_its_own_logits():
  """Row 0 packs three examples; rows 1-3 hold each example alone (padded)."""
  model_config, params = random_params("v1_1")
  rng = np.random.default_rng(5)
  examples = [(rng.integers(2, 96, n_in), rng.integers(2, 96, n_tg))
              for n_in, n_tg in ((13, 6), (30, 3), (4, 8))]
  rows = {name: np.zeros((4, 50 if name.startswith("encoder") else 20), np.int32)
          for name in span_corruption.FEATURES}

  def place(row, segment, inputs, targets, used_in, used_tg):
    rows["encoder_input_tokens"][row, used_in:used_in + len(inputs)] = inputs
    rows["encoder_segment_ids"][row, used_in:used_in + len(inputs)] = segment
    rows["decoder_target_tokens"][row, used_tg:used_tg + len(targets)] = targets
    rows["decoder_segment_ids"][row, used_tg:used_tg + len(targets)] = segment
    rows["decoder_positions"][row, used_tg:used_tg + len(targets)] = np.arange(len(targets))

  used_in = used_tg = 0
  for segment, (inputs, targets) in enumerate(examples, 1):
    place(0, segment, inputs, targets, used_in, used_tg)
    place(segment, 1, inputs, targets, 0, 0)
    used_in, used_tg = used_in + len(inputs), used_tg + len(targets)
  logits = our_logits(model_config, params, rows["encoder_input_tokens"], rows["encoder_segment_ids"],
                      np.asarray(decoder_inputs(rows)), rows["decoder_segment_ids"])
  start = 0
  for row, (_, targets) in enumerate(examples, 1):
    np.testing.assert_allclose(logits[0, start:start + len(targets)], logits[row, :len(targets)],
                               atol=1e-5, rtol=0)
    start += len(targets)
  assert np.abs(logits[1, :6] - logits[2, :6]).max() > 0.1  # different examples, different logits


def test_scan_and_remat_give_the_same_logits():
  model_config, params = random_params("v1_0")
  scanned_config = model_config.copy_and_resolve_references()
  scanned_config.update(scan_layers=True, remat="dots")
  cfg = t5.make_config(scanned_config)
  scanned_params = t5.to_layout(params, cfg, scanned=True)
  assert scanned_params["decoder"]["layers"]["mlp"]["wo"]["kernel"].shape == (3, 48, 32)
  batch = padded_batch(np.random.default_rng(7))
  valid = batch[3].astype(bool)
  np.testing.assert_allclose(our_logits(scanned_config, scanned_params, *batch)[valid],
                             our_logits(model_config, params, *batch)[valid], atol=1e-5, rtol=0)
  jax.tree_util.tree_map(np.testing.assert_array_equal, t5.to_layout(scanned_params, cfg, scanned=False), params)


@pytest.mark.parametrize("scan", [False, True])
def test_every_parameter_has_logical_axis_names(scan):
  cfg = t5.T5Config(**SMALL, **VERSIONS["v1_1"], scan_layers=scan)
  boxed = jax.eval_shape(lambda: t5.build(cfg).init(jax.random.key(0), **t5.example_inputs(cfg)))["params"]
  known = {"vocab", "embed", "heads", "kv", "mlp", "relpos", "layers"}
  for path, leaf in traverse_util.flatten_dict(boxed).items():
    assert isinstance(leaf, nn.LogicallyPartitioned), path
    assert len(leaf.names) == leaf.value.ndim and set(leaf.names) <= known, (path, leaf.names)
    assert (leaf.names[0] == "layers") == ("layers" in path), path  # scanned stacks: a leading layers axis


EXACT = {"t5_small": 60_506_624, "t5_base": 222_903_552, "t5_large": 737_668_096,
         "t5_v1_1_small": 76_961_152, "t5_v1_1_base": 247_577_856, "t5_v1_1_large": 783_150_080}


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_counts(name):
  # The larger ones trace faster scanned; the scanned layout holds the same leaves (see to_layout above).
  overrides = [] if name.endswith("small") else ["model.scan_layers=True"]
  counts = params_lib.count_model(config_lib.load_config(name, overrides).model)
  assert counts["total"] == EXACT[name] and "encoder" not in counts


@pytest.mark.parametrize("override,message", [
    ("model.feed_forward_proj=swish", "feed_forward_proj"),
    ("model.num_heads=0", "num_heads"),
    ("model.remat=some", "remat"),
])
def test_bad_model_settings_are_user_errors(override, message):
  with pytest.raises(config_lib.UserError, match=message):
    config_lib.load_config("t5_small", [override])
