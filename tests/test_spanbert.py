"""SpanBERT: span masking against a port of the release's sampler and the closed form, the SBO features and head
by hand, the export to Hugging Face BERT, and learning through the CLI."""

import json
import math

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from objective_helpers import LENGTH, SPECIAL, WORD_START, word_sequences
import pytest
import torch
import transformers

from bert_jax import cli, config as config_lib, models, objectives
from bert_jax.convert import weights
from bert_jax.data.tf_cpu import tf
from bert_jax.errors import UserError
from bert_jax.objectives import masked_lm_data, span_boundary_data

PAD, CLS, SEP, MASK = 0, 1, 2, 3
TABLES = masked_lm_data.Tables(tf.constant(SPECIAL), tf.constant(WORD_START),
                        tf.constant(np.flatnonzero(~SPECIAL).astype(np.int32)), MASK)


def word_rows(count: int) -> np.ndarray:
  """[CLS] text [SEP] [PAD]...: ALBERT's test rows of words of one to three pieces, the [SEP] between A and B
  taken out."""
  rows = word_sequences(count)
  first_sep = np.argmax(rows == SEP, axis=1)
  keep = np.arange(LENGTH)[None] != first_sep[:, None]
  return np.pad(rows[keep].reshape(count, LENGTH - 1), [(0, 0), (0, 1)])


def release_masking(text: np.ndarray, rng: np.random.Generator, mask_ratio=0.15, p=0.2, upper=10):
  """The release's PairWithSpanMaskingScheme.mask (pretraining/fairseq/data/masking.py) on one text block: the
  masked positions, and (drawn length, words covered) of each span."""
  lens = list(range(1, upper + 1))
  distrib = [p * (1 - p) ** (i - 1) for i in lens]
  distrib = [x / sum(distrib) for x in distrib]
  starts = WORD_START[text]
  word_end = lambda anchor: next((i for i in range(anchor + 1, len(text)) if starts[i]), len(text))
  mask_num = math.ceil(len(text) * mask_ratio)
  mask, spans = set(), []
  while len(mask) < mask_num:
    span_len = rng.choice(lens, p=distrib)
    anchor = rng.choice(len(text))
    if anchor in mask:
      continue
    left = anchor
    while left > 0 and not starts[left]:
      left -= 1
    right = word_end(anchor)
    for i in range(left, right):
      if len(mask) >= mask_num:
        break
      mask.add(i)
    num_words = 1
    while num_words < span_len and right < len(text) and len(mask) < mask_num:
      left, right = right, word_end(right)
      num_words += 1
      for i in range(left, right):
        if len(mask) >= mask_num:
          break
        mask.add(i)
    spans.append((span_len, num_words))
  return mask, spans


def runs(masked: np.ndarray) -> list[tuple[int, int]]:
  """(start, end inclusive) of each maximal run of True."""
  edges = np.flatnonzero(np.diff(np.concatenate([[0], masked.astype(int), [0]])))
  return [(s, e - 1) for s, e in zip(edges[::2], edges[1::2])]


def words_in(row: np.ndarray, start: int, end: int) -> int:
  return int(WORD_START[row[start:end + 1]].sum())


def histogram(lengths, upper=10) -> np.ndarray:
  counts = np.bincount(np.asarray(lengths), minlength=upper + 1)[1:upper + 1]
  return counts / counts.sum()


@pytest.fixture(scope="module")
def masked_rows():
  rows = word_rows(1200)
  out = span_boundary_data.mask_spans(tf.constant(rows), tf.constant((rows != PAD).astype(np.int32)),
                                tf.constant([0, 7], tf.int64), TABLES, 0.15, 80, 0.2, 10, 15, 0.8, 0.1)
  return rows, {k: v.numpy() for k, v in out.items()}


def test_span_lengths_follow_the_clipped_geometric_and_the_release(masked_rows):
  rows, out = masked_rows
  probs = span_boundary_data.span_length_probs(0.2, 10)
  mean = float(np.arange(1, 11) @ probs)
  assert abs(mean - 3.8) < 0.05  # the paper's mean span length
  drawn = out["drawn"][out["drawn"] > 0]
  assert len(drawn) > 3000
  np.testing.assert_allclose(histogram(drawn), probs, atol=0.02)
  assert abs(drawn.mean() - mean) < 0.15
  # The release's sampler on the same texts: words each span covers, and the merged spans' lengths in words.
  rng = np.random.default_rng(0)
  port_covered, port_merged, ours_merged = [], [], []
  for r, row in enumerate(rows):
    text = row[1:(row != PAD).sum() - 1]
    mask, spans = release_masking(text, rng)
    port_covered += [n for _, n in spans]
    flags = np.zeros(len(text), bool)
    flags[list(mask)] = True
    port_merged += [words_in(text, s, e) for s, e in runs(flags)]
    ours_merged += [words_in(row, s, e) for s, e in runs(out["span_ids"][r] > 0)]
  ours_covered = out["words"][out["drawn"] > 0]
  print(f"covered mean ours {ours_covered.mean():.3f} port {np.mean(port_covered):.3f}; merged mean ours "
        f"{np.mean(ours_merged):.3f} port {np.mean(port_merged):.3f}")
  np.testing.assert_allclose(histogram(ours_covered), histogram(port_covered), atol=0.025)
  assert abs(ours_covered.mean() - np.mean(port_covered)) < 0.15
  assert abs(np.mean(ours_merged) - np.mean(port_merged)) < 0.25


def test_budget_whole_words_specials_and_one_decision_per_span(masked_rows):
  rows, out = masked_rows
  masked = out["span_ids"] > 0
  text = ~SPECIAL[rows]
  assert not (masked & ~text).any()  # [CLS], [SEP] and padding never masked
  share = masked.sum() / text.sum()
  port = sum(math.ceil(n * 0.15) for n in text.sum(1)) / text.sum()
  print(f"masked share ours {share:.4f}, release budget {port:.4f}")
  assert port <= share < port + 0.01  # ours completes the word the budget ends in
  assert (masked.sum(1) <= 80).all()
  continuing = text[:, 1:] & ~WORD_START[rows[:, 1:]]
  assert (masked[:, 1:][continuing] == masked[:, :-1][continuing]).all()  # every word masked whole or not at all
  kinds, changed = [], []  # a random span changes all its tokens (but for a replacement equal to the original)
  for r, row in enumerate(rows):
    for s, e in runs(masked[r]):
      corrupted = out["input_ids"][r, s:e + 1]
      is_mask = corrupted == MASK
      assert is_mask.all() or not is_mask.any()
      kinds.append("mask" if is_mask.all() else "keep" if (corrupted == row[s:e + 1]).all() else "random")
      if kinds[-1] == "random":
        changed.append((corrupted != row[s:e + 1]).mean())
        assert not SPECIAL[corrupted].any()
  shares = {k: kinds.count(k) / len(kinds) for k in ("mask", "random", "keep")}
  print(f"{len(kinds)} merged spans: {shares}")
  assert np.mean(changed) > 0.98
  np.testing.assert_allclose([shares["mask"], shares["random"], shares["keep"]], [0.8, 0.1, 0.1], atol=0.025)


def test_sbo_targets_by_hand():
  """Short hand-made texts masked densely, so spans touch [CLS] and [SEP] and run past sbo_max_targets."""
  row = np.array([CLS, 10, 600, 11, 12, 601, 602, 13, 14, 15, 603, 16, SEP, PAD, PAD, PAD], np.int32)
  rows = np.tile(row, (200, 1))
  out = span_boundary_data.mask_spans(tf.constant(rows), tf.constant((rows != PAD).astype(np.int32)),
                                tf.constant([3, 4], tf.int64), TABLES, 0.5, 8, 0.2, 10, 2, 0.8, 0.1)
  out = {k: v.numpy() for k, v in out.items()}
  seen = set()
  for r in range(len(rows)):
    flags = out["span_ids"][r] > 0
    expected = {}
    for s, e in runs(flags):
      for p in range(s, e + 1):
        edge = s - 1 == 0 or e + 1 == 12  # a boundary at [CLS] or [SEP]: no SBO target, as in the release
        expected[p] = (s - 1, e + 1, p - s, float(not edge and p - s < 2))
        seen.add("edge" if edge else "long" if p - s >= 2 else "inner")
    n = len(expected)
    assert 6 <= n <= 8 and n == out["masked_weights"][r].sum()  # ceil(0.5 x 11), and the rest of a word
    positions = out["masked_positions"][r, :n]
    assert list(positions) == sorted(expected)
    got = zip(out["sbo_left"][r, :n], out["sbo_right"][r, :n], out["sbo_relative"][r, :n], out["sbo_weights"][r, :n])
    assert [tuple(map(float, g)) for g in got] == [tuple(map(float, expected[p])) for p in positions]
    assert (out["masked_ids"][r, :n] == row[positions]).all()
    assert not out["sbo_weights"][r, n:].any() and not out["masked_weights"][r, n:].any()
  assert seen == {"edge", "long", "inner"}


def tiny_model_config(**overrides):
  return models.default_config("spanbert", vocab_size=97, hidden_size=32, num_layers=2, num_heads=4,
                               intermediate_size=37, max_position=24, dropout=0.0, attention_dropout=0.0,
                               sbo_max_targets=5, sbo_position_size=6, **overrides)


def perturbed_params(model_config, seed=0):
  model = models.build_model(model_config)
  ids = jnp.ones((1, 8), jnp.int32)
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(seed), ids, jnp.zeros_like(ids), ids)["params"])
  flat = traverse_util.flatten_dict(jax.tree_util.tree_map(np.asarray, jax.device_get(params)))
  rng = np.random.default_rng(seed)
  return traverse_util.unflatten_dict({k: v + 0.1 * rng.standard_normal(v.shape).astype(np.float32)
                                       for k, v in flat.items()})


def test_sbo_head_equals_a_hand_computation():
  model_config = tiny_model_config()
  params = perturbed_params(model_config)
  rng = np.random.default_rng(1)
  ids = rng.integers(5, 97, (2, 10)).astype(np.int32)
  left = np.array([[1, 1, 1, 5], [0, 3, 3, 7]], np.int32)
  right = np.array([[4, 4, 4, 7], [2, 6, 6, 9]], np.int32)
  relative = np.array([[0, 1, 2, 0], [0, 0, 1, 0]], np.int32)
  apply = jax.jit(models.build_model(model_config).apply)
  out = apply({"params": params}, ids, np.zeros_like(ids), np.ones_like(ids), left + 1, left, right, relative)
  x = np.asarray(out["sequence_output"], np.float64)
  p = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), params["sbo_head"])
  gelu = lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))

  def layer_norm(v, norm):
    mean, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
    return (v - mean) / np.sqrt(var + 1e-12) * norm["scale"] + norm["bias"]

  rows = np.arange(2)[:, None]
  h = np.concatenate([x[rows, left], x[rows, right], p["position_embeddings"]["embedding"][relative]], -1)
  for k in (1, 2):
    h = layer_norm(gelu(h @ p[f"dense_{k}"]["kernel"] + p[f"dense_{k}"]["bias"]), p[f"layer_norm_{k}"])
  embeddings = np.asarray(params["encoder"]["embeddings"]["word_embeddings"]["embedding"], np.float64)
  expected = h @ embeddings.T + p["bias"]
  assert out["sbo_logits"].shape == (2, 4, 97)
  np.testing.assert_allclose(np.asarray(out["sbo_logits"]), expected, atol=2e-5, rtol=0)


def test_export_loads_as_hf_bert_and_matches(tmp_path, capsys):
  model_config = tiny_model_config()
  params = perturbed_params(model_config, seed=2)
  weights.save_params(tmp_path / "params", params)
  overrides = [f"--config.model.{k}={v}" for k, v in model_config.items() if k != "family"]
  assert cli.main(["convert", "--to-hf", "--config", "spanbert_tiny", *overrides, "--params",
                   str(tmp_path / "params"), "--output", str(tmp_path / "hf")]) == 0
  assert "SBO" in capsys.readouterr().out
  assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
  hf, info = transformers.BertForMaskedLM.from_pretrained(tmp_path / "hf", output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  encoder, info = transformers.BertModel.from_pretrained(tmp_path / "hf", add_pooling_layer=False,
                                                         output_loading_info=True)
  assert not info["missing_keys"] and all(k.startswith("cls.predictions.") for k in info["unexpected_keys"]), info
  ids = np.random.default_rng(3).integers(5, 97, (3, 12))
  mask = (np.arange(12)[None] < np.array([[12], [9], [5]])).astype(np.int64)
  ours = jax.jit(models.build_model(model_config).apply)({"params": params}, ids, np.zeros_like(ids), mask)
  with torch.no_grad():
    tensors = dict(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    logits = hf.eval()(**tensors).logits.numpy()
    hidden = encoder.eval()(**tensors).last_hidden_state.numpy()
  diffs = {"mlm_logits": np.abs(np.asarray(ours["mlm_logits"]) - logits).max(),
           "sequence_output": np.abs(np.asarray(ours["sequence_output"]) - hidden).max()}
  print(f"max abs differences {diffs}")
  assert max(diffs.values()) <= 1e-4, diffs


def test_tiny_spanbert_learns_through_the_cli(tmp_path):
  workdir = tmp_path / "run"
  assert cli.main(["train", "--config", "configs/spanbert_tiny.py", "--workdir", str(workdir),
                   "--config.train.steps=30", "--config.train.batch_size=8", "--config.train.log_every=5",
                   "--config.optimizer.learning_rate=3e-3", "--config.optimizer.warmup_steps=5",
                   "--config.data.tokenizer_sentences=20000", "--config.model.vocab_size=1024",
                   "--config.checkpoint.every=1000"]) == 0
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  sbo = [r["sbo_loss"] for r in records if "sbo_loss" in r]
  mlm = [r["mlm_loss"] for r in records if "mlm_loss" in r]
  print(f"sbo_loss {sbo}\nmlm_loss {mlm}")
  assert len(sbo) == 6 and all(np.isfinite(sbo))
  assert np.mean(sbo[-2:]) < sbo[0] - 0.7 and np.mean(mlm[-2:]) < mlm[0] - 0.7  # from ln(1024) = 6.93


def test_recipes_and_a_mismatched_family():
  c = config_lib.load_config("spanbert_large")
  assert (c.data.seq_len, c.train.batch_size, c.train.steps, c.optimizer.learning_rate, c.optimizer.eps,
          c.optimizer.warmup_steps) == (512, 256, 2_400_000, 1e-4, 1e-8, 10_000)
  assert (c.objective.geometric_p, c.objective.max_span, c.model.sbo_max_targets, c.model.sentence_head,
          c.model.pooler, c.model.hidden_size, c.model.num_layers) == (0.2, 10, 15, "none", False, 1024, 24)
  with pytest.raises(UserError, match="serves families spanbert; model.family is bert"):
    objectives.get_objective(config_lib.load_config("bert_tiny", ["objective.name=span_boundary"]))
