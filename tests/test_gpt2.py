"""GPT-2: parity with transformers' GPT2LMHeadModel (logits with right padding, export, import through `bert-jax
convert`), generation with the KV cache against full recomputation, sampling, the causal-LM windows, the published
parameter counts, and the byte-level BPE tokenizer.

The reference is a transformers GPT2LMHeadModel built from a tiny config with random weights (every parameter
perturbed, so LayerNorm scales and biases are not at their initial 1 and 0); nothing is downloaded.
"""

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from bert_jax import cli, config as config_lib, convert, models, params as params_lib
from bert_jax.convert import weights
from bert_jax.data import hf_tokenizer, tokenizer as tokenizer_lib
from bert_jax.errors import UserError
from bert_jax.models import gpt2
from bert_jax.objectives import causal_lm, decoding

TOLERANCE = 1e-4
HF_CONFIG = transformers.GPT2Config(vocab_size=97, n_positions=24, n_embd=32, n_layer=2, n_head=4, n_inner=37,
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=96, eos_token_id=96)
LENGTHS = (12, 9, 5)  # real tokens per row; the rest is right padding


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The HF model saved with save_pretrained, and its import."""
  torch.manual_seed(0)
  model = transformers.GPT2LMHeadModel(HF_CONFIG).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  hf_dir = tmp_path_factory.mktemp("gpt2")
  model.save_pretrained(hf_dir)
  state_dict, hf_config = weights.read_hf_dir(hf_dir)
  model_config, params = convert.from_hf(state_dict, hf_config)
  return {"model": model, "hf_dir": hf_dir, "state_dict": state_dict, "model_config": model_config, "params": params}


def _inputs() -> tuple[np.ndarray, np.ndarray]:
  mask = (np.arange(12)[None] < np.array(LENGTHS)[:, None]).astype(np.int64)
  ids = np.where(mask, np.random.default_rng(0).integers(0, HF_CONFIG.vocab_size, mask.shape), 0)
  return ids, mask


def _hf_logits(model, ids, mask) -> np.ndarray:
  with torch.no_grad():
    return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()


def _our_logits(model_config, params, ids, mask=None) -> np.ndarray:
  return np.asarray(jax.jit(models.build_model(model_config).apply)({"params": params}, ids, mask))


def test_logits_match_transformers_with_right_padding(reference):
  ids, mask = _inputs()
  expected = _hf_logits(reference["model"], ids, mask)
  ours = _our_logits(reference["model_config"], reference["params"], ids, mask)
  real = mask.astype(bool)
  np.testing.assert_allclose(ours[real], expected[real], atol=TOLERANCE, rtol=0)
  np.testing.assert_allclose(ours, expected, atol=TOLERANCE, rtol=0)  # padded queries see the real keys before them
  alone = _hf_logits(reference["model"], ids[2:, :LENGTHS[2]], mask[2:, :LENGTHS[2]])
  np.testing.assert_allclose(ours[2, :LENGTHS[2]], alone[0], atol=TOLERANCE, rtol=0)  # padding changes nothing


def test_scanned_layout_gives_the_same_logits(reference):
  scanned_config = reference["model_config"].copy_and_resolve_references()
  scanned_config.update(scan_layers=True, remat="full")
  scanned = gpt2.to_layout(reference["params"], gpt2.make_config(scanned_config), scanned=True)
  assert "layers" in scanned and "layers_0" not in scanned
  ids, mask = _inputs()
  np.testing.assert_allclose(_our_logits(scanned_config, scanned, ids, mask),
                             _our_logits(reference["model_config"], reference["params"], ids, mask), atol=1e-5)


def test_import_maps_config_and_counts(reference):
  m, model = reference["model_config"], reference["model"]
  assert (m.vocab_size, m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size, m.max_position) == (
      97, 32, 2, 4, 37, 24)
  assert m.hidden_act == "gelu_new" and m.layer_norm_eps == HF_CONFIG.layer_norm_epsilon
  assert params_lib.count(reference["params"]) == model.num_parameters()  # the tied head counted once


def test_export_loads_in_transformers_and_round_trips(reference, tmp_path):
  hf_config, state_dict = convert.to_hf(reference["model_config"], reference["params"])
  assert state_dict.keys() == reference["state_dict"].keys()  # what save_pretrained writes: lm_head left out
  for key, value in state_dict.items():
    np.testing.assert_array_equal(value, reference["state_dict"][key], err_msg=key)
  weights.write_hf_dir(tmp_path, hf_config, state_dict)
  reloaded, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
  ids, mask = _inputs()
  np.testing.assert_allclose(_hf_logits(reloaded.eval(), ids, mask), _hf_logits(reference["model"], ids, mask),
                             atol=TOLERANCE, rtol=0)
  model_config, params = convert.from_hf(state_dict, hf_config)
  assert model_config.to_dict() == reference["model_config"].to_dict()
  flat, expected = traverse_util.flatten_dict(params), traverse_util.flatten_dict(reference["params"])
  assert flat.keys() == expected.keys() and all(np.array_equal(flat[k], expected[k]) for k in flat)


def test_convert_command_imports_a_saved_model(reference, tmp_path):
  assert cli.main(["convert", "--from-hf", str(reference["hf_dir"]), "--output", str(tmp_path / "ours")]) == 0
  config = config_lib.load_config(str(tmp_path / "ours" / "config.py"))
  assert config.model.to_dict() == reference["model_config"].to_dict()
  assert config.objective.name == "causal_lm" and config.data.seq_len == 24  # the imported position table
  params = traverse_util.flatten_dict(weights.restore_params(tmp_path / "ours" / "params"))
  expected = traverse_util.flatten_dict(reference["params"])
  assert params.keys() == expected.keys() and all(np.array_equal(params[k], expected[k]) for k in params)


def test_unsupported_checkpoints_are_user_errors(reference):
  state, hf_config = reference["state_dict"], reference["model"].config.to_dict()
  with pytest.raises(UserError, match="tied"):
    convert.from_hf({**state, "lm_head.weight": np.zeros((97, 32), np.float32)}, hf_config)
  with pytest.raises(UserError, match="lacks transformer.h.1.ln_1.weight|lacks h.1.ln_1.weight"):
    convert.from_hf({k: v for k, v in state.items() if ".h.1.ln_1.weight" not in k}, hf_config)
  with pytest.raises(UserError, match="scale_attn_by_inverse_layer_idx"):
    convert.from_hf(state, {**hf_config, "scale_attn_by_inverse_layer_idx": True})


def _prompts() -> list[list[int]]:
  rng = np.random.default_rng(1)
  return [list(rng.integers(0, 96, n)) for n in (7, 3, 5)]


def test_cached_generation_equals_full_recomputation(reference):
  model_config, params = reference["model_config"], reference["params"]
  model = models.build_model(model_config)
  steps, eos = 8, 96
  tokens_BT, logits_BTV = decoding.generate(model, params, _prompts(), steps, eos)
  full = jax.jit(lambda ids, mask: model.apply({"params": params}, ids, mask))
  for prompt, tokens_T, logits_TV in zip(_prompts(), np.asarray(tokens_BT), np.asarray(logits_BTV)):
    sequence = list(prompt)
    for t in range(steps):  # greedy decoding by recomputing the whole sequence (right-padded to one shape) each step
      ids = np.zeros((1, 16), np.int32)
      ids[0, :len(sequence)] = sequence
      recomputed_V = np.asarray(full(ids, (ids > -1) & (np.arange(16) < len(sequence))))[0, len(sequence) - 1]
      np.testing.assert_allclose(logits_TV[t], recomputed_V, atol=TOLERANCE, rtol=0)
      assert tokens_T[t] == np.argmax(recomputed_V)
      sequence.append(int(tokens_T[t]))
  hf_greedy = reference["model"].generate(torch.tensor([_prompts()[0]]), max_new_tokens=steps, do_sample=False,
                                          pad_token_id=0, eos_token_id=None, attention_mask=None)
  assert hf_greedy[0, 7:].tolist() == np.asarray(tokens_BT)[0].tolist()


def test_generation_stops_at_end_of_text(reference):
  model = models.build_model(reference["model_config"])
  free_BT, _ = decoding.generate(model, reference["params"], _prompts(), 8, eos_id=-1)
  first = int(np.asarray(free_BT)[0, 0])
  stopped_BT = np.asarray(decoding.generate(model, reference["params"], _prompts(), 8, eos_id=first, pad_id=5)[0])
  assert stopped_BT[0, 0] == first and set(stopped_BT[0, 1:].tolist()) == {5}
  for free_T, stopped_T in zip(np.asarray(free_BT)[1:], stopped_BT[1:]):  # the other rows run on until they write it
    written = list(free_T).index(first) + 1 if first in free_T else len(free_T)
    assert list(stopped_T[:written]) == list(free_T[:written]) and set(stopped_T[written:].tolist()) <= {5}


def test_sampling_keeps_to_top_k_and_top_p():
  logits_BV = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 4000))
  keys = jax.random.split(jax.random.key(0), 1)[0]
  assert (decoding.choose(logits_BV, keys, 0.0) == 0).all()
  top2 = np.asarray(decoding.choose(logits_BV, keys, 1.0, top_k=2))
  assert set(top2.tolist()) == {0, 1} and abs(np.mean(top2 == 0) - 0.5 / 0.8) < 0.03
  nucleus = np.asarray(decoding.choose(logits_BV, keys, 1.0, top_p=0.9))  # 0.5 + 0.3 < 0.9: three tokens
  assert set(nucleus.tolist()) == {0, 1, 2} and abs(np.mean(nucleus == 2) - 0.15 / 0.95) < 0.03
  everything = np.asarray(decoding.choose(logits_BV, keys, 1.0))
  assert abs(np.mean(everything == 3) - 0.05) < 0.015
  assert (decoding.choose(logits_BV, keys, 1.0, top_p=0.1) == 0).all()


def test_windows_pack_documents_with_end_of_text():
  from bert_jax.data.tf_cpu import tf

  config = config_lib.load_config("gpt2_tiny", ["data.seq_len=4"])
  documents = tf.data.Dataset.from_generator(lambda: iter([[10, 11, 12, 99], [20, 21, 99], [30, 31, 32, 33, 99]]),
                                             output_signature=tf.TensorSpec([None], tf.int32))
  windows = [{k: v.tolist() for k, v in w.items()}
             for w in causal_lm.CausalLM(config).windows(documents).as_numpy_iterator()]
  stream = [10, 11, 12, 99, 20, 21, 99, 30, 31, 32, 33, 99]
  assert windows == [{"input_ids": stream[i:i + 4], "target_ids": stream[i + 1:i + 5]} for i in (0, 5)]


@pytest.mark.parametrize("name,expected", [("gpt2", 124_439_808), ("gpt2_medium", 354_823_168)])
def test_published_parameter_counts(name, expected):
  counts = params_lib.count_model(config_lib.load_config(name, ["model.scan_layers=True"]).model)
  assert counts["total"] == counts["encoder"] == expected


def test_byte_bpe_round_trips_any_text(tmp_path):
  corpus = ["The quick brown fox jumps over the lazy dog.", "北京是中国的首都，上海是最大的城市。",
            "Café, naïve façade; ÆØÅ and ü — «quotes»", "def f(x):\n\treturn x  # two  spaces"] * 20
  model = tokenizer_lib.train_serialized(corpus, 300, "byte_bpe", pad_id=1)
  (tmp_path / "spm.model").write_bytes(model)  # the name a run's tokenizer gets: the content says what it is
  tokenizer = tokenizer_lib.load(tmp_path / "spm.model")
  assert isinstance(tokenizer, hf_tokenizer.HFTokenizer) and tokenizer.vocab_size == 300
  assert [tokenizer.cls_id, tokenizer.pad_id, tokenizer.eos_id, tokenizer.role_id("unk"), tokenizer.mask_id,
          tokenizer.eod_id] == [0, 1, 2, 3, 4, 5]  # RoBERTa's and BART's first four, then <mask>, <|endoftext|>
  unseen = ["Ελληνικά και русский текст", "日本語のテキスト🙂", "  leading and trailing  ", "Zürich"]
  for text in corpus[:4] + unseen:
    ids = tokenizer.encode([text])[0]
    spaced = text if text.startswith(" ") else " " + text  # each sentence's prefix space (dummy_prefix auto)
    assert tokenizer.decode(ids) == spaced and min(ids) >= 6  # no special id, no unknown: every byte has an id
  document = tokenizer.encode(["One sentence.", "Another one."])
  assert tokenizer.decode(document[0] + document[1]) == " One sentence. Another one."  # sentences joined keep a space
  (tmp_path / "gpt2_own.json").write_bytes(tokenizer_lib.train_serialized(corpus, 300, "byte_bpe", dummy_prefix="off"))
  gpt2_own = tokenizer_lib.load(tmp_path / "gpt2_own.json")
  assert gpt2_own.decode(gpt2_own.encode(["The quick"])[0]) == "The quick"
  assert tokenizer.encode(["The quick"])[0] == tokenizer.encode(["The"])[0] + tokenizer.encode([" quick"])[0]
  assert tokenizer.pieces[tokenizer.encode([" quick"])[0][0]].startswith("\u0120")  # GPT-2's mark of a space


def test_byte_bpe_errors():
  with pytest.raises(UserError, match="no room"):
    tokenizer_lib.train_serialized(["some text"], 200, "byte_bpe")
  with pytest.raises(UserError, match="extra_ids"):
    tokenizer_lib.train_serialized(["some text"], 400, "byte_bpe", extra_ids=10)
