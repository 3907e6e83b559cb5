"""Span corruption: length helper, noise statistics, exact reconstruction, packing, loss, decoding, errors."""

import math

import flax.linen as nn
import jax
import numpy as np
import pytest
import tensorflow as tf

from bert_jax import config as config_lib, models
from bert_jax.errors import UserError
from bert_jax.objectives import get_objective, span_corruption, span_corruption_data, training_loss

SENTINEL = 32099  # <extra_id_0> of T5's 32000 pieces + 100 extra ids
EOS = 1
TOKENS = tf.TensorSpec([None], tf.int32)


def t5_config(*overrides: str):
  return config_lib.load_config("t5_tiny", list(overrides))


def reconstruct(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """The raw chunk: each sentinel of the inputs replaced by what follows it in the targets."""
  assert inputs[-1] == EOS and targets[-1] == EOS
  fills, current = {}, None
  for token in targets[:-1]:
    if token > SENTINEL - 100:
      current = fills.setdefault(int(token), [])
    else:
      current.append(int(token))
  out = []
  for token in inputs[:-1]:
    out.extend(fills.pop(int(token)) if token > SENTINEL - 100 else [int(token)])
  assert not fills
  return np.asarray(out)


def corrupted(chunk_lengths: list[int], seed: int = 0) -> list[tuple[np.ndarray, dict]]:
  """(raw chunk, {'inputs', 'targets'}) for chunks of distinct tokens 2..length+1."""
  chunks = [np.arange(2, n + 2, dtype=np.int32) for n in chunk_lengths]
  dataset = tf.data.Dataset.from_generator(lambda: iter(chunks), output_signature=TOKENS)
  examples = dataset.enumerate().map(
      lambda i, c: span_corruption_data.corrupt(c, 0.15, 3.0, SENTINEL, EOS,
                                                tf.stack([tf.constant(seed, tf.int64), i])))
  return list(zip(chunks, examples.as_numpy_iterator()))


def test_length_helper():
  assert span_corruption.lengths(512, 0.15, 3.0) == (568, 114)
  assert span_corruption.lengths(128, 0.15, 3.0) == (141, 29)
  for inputs_length in range(3, 600, 7):
    raw, _ = span_corruption.lengths(inputs_length, 0.15, 3.0)
    assert span_corruption.example_lengths(raw, 0.15, 3.0)[0] <= inputs_length
    assert span_corruption.example_lengths(raw + 1, 0.15, 3.0)[0] > inputs_length  # the longest that fits


def test_noise_statistics_reconstruction_and_lengths():
  rng = np.random.default_rng(0)
  lengths = [568] * 600 + list(rng.integers(2, 1200, 600))
  noise_total = span_total = 0
  noise_by_position = np.zeros(568)
  span_lengths = []
  for chunk, example in corrupted(lengths):
    inputs, targets = example["inputs"], example["targets"]
    np.testing.assert_array_equal(reconstruct(inputs, targets), chunk)
    assert (len(inputs), len(targets)) == span_corruption.example_lengths(len(chunk), 0.15, 3.0)
    sentinels = inputs[inputs > SENTINEL - 100]
    np.testing.assert_array_equal(sentinels, SENTINEL - np.arange(len(sentinels)))  # down from <extra_id_0>
    np.testing.assert_array_equal(targets[targets > SENTINEL - 100], sentinels)
    is_noise = ~np.isin(chunk, inputs)
    assert not is_noise[0] and is_noise[-1]  # non-noise and noise spans alternate, non-noise first
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], is_noise.astype(int), [0]]))))[::2]
    assert len(runs) == len(sentinels)
    if len(chunk) == 568:
      noise_by_position += is_noise
      span_lengths.extend(runs)
    if len(chunk) >= 200:
      noise_total += is_noise.sum()
      span_total += len(runs)
  assert abs(noise_total / sum(n for n in lengths if n >= 200) - 0.15) < 0.01
  assert abs(noise_total / span_total - 3.0) < 0.2
  # Away from the ends (the first token is never noise, the last always), each position is noise about 15%
  # of the time (600 samples, bins of 40 positions).
  binned = noise_by_position[8:528].reshape(13, 40).mean(1) / 600
  assert np.all(np.abs(binned - 0.15) < 0.03), binned
  # Span lengths follow a uniformly random split of 85 noise tokens into 28 spans.
  expected = [math.comb(85 - k - 1, 26) / math.comb(84, 27) for k in (1, 2, 3, 4, 5)]
  observed = [np.mean(np.asarray(span_lengths) == k) for k in (1, 2, 3, 4, 5)]
  np.testing.assert_allclose(observed, expected, atol=0.02)


def test_same_seed_same_noise_other_seed_other_noise():
  first, again, other = (corrupted([300] * 5, seed) for seed in (3, 3, 4))
  for (_, a), (_, b) in zip(first, again):
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
  assert any(not np.array_equal(a["inputs"], c["inputs"]) for (_, a), (_, c) in zip(first, other))


def documents_stream(count: int, seed: int = 0) -> tuple[list[np.ndarray], tf.data.Dataset]:
  rng = np.random.default_rng(seed)
  docs = [rng.integers(5, 3000, n).astype(np.int32) for n in rng.integers(1, 120, count)]
  return docs, tf.data.Dataset.from_generator(lambda: iter(docs), output_signature=TOKENS)


def unpack(rows: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
  """The (inputs, targets) of every example of the rows, in order, checking the segment layout."""
  examples = []
  for row in rows:
    enc_seg, dec_seg = row["encoder_segment_ids"], row["decoder_segment_ids"]
    count = enc_seg.max()
    assert dec_seg.max() == count and count >= 1
    for ids in (enc_seg, dec_seg):  # segments 1..count in order, then padding
      used = ids[ids > 0]
      np.testing.assert_array_equal(used, np.sort(used))
      assert np.all(ids[len(used):] == 0) and set(used) == set(range(1, count + 1))
    for s in range(1, count + 1):
      positions = row["decoder_positions"][dec_seg == s]
      np.testing.assert_array_equal(positions, np.arange(len(positions)))
      examples.append((row["encoder_input_tokens"][enc_seg == s], row["decoder_target_tokens"][dec_seg == s]))
  return examples


@pytest.mark.parametrize("packing", [True, False])
def test_rows_hold_the_whole_stream(packing, monkeypatch):
  # short tails every 3 documents: something to pack
  monkeypatch.setattr(span_corruption_data, "DOCUMENTS_PER_GROUP", 3)
  objective = get_objective(t5_config(f"objective.packing={packing}"))
  docs, stream = documents_stream(60)
  rows = list(objective.rows(stream, SENTINEL, EOS, seed=1).as_numpy_iterator())
  for row in rows:
    assert {k: v.shape for k, v in row.items()} == {k: s[1:] for k, (s, _) in objective.feature_spec(1).items()}
  expected = []
  for g in range(0, len(docs), 3):
    group = np.concatenate(docs[g:g + 3])
    expected += [c for c in np.split(group, range(70, len(group), 70)) if len(c) >= 2]
  examples = unpack(rows)
  assert len(examples) == len(expected)
  for (inputs, targets), chunk in zip(examples, expected):
    np.testing.assert_array_equal(reconstruct(inputs, targets), chunk)
  most_segments = max(row["encoder_segment_ids"].max() for row in rows)
  assert most_segments >= 2 if packing else most_segments == 1
  again = list(objective.rows(documents_stream(60)[1], SENTINEL, EOS, seed=1).as_numpy_iterator())
  jax.tree_util.tree_map(np.testing.assert_array_equal, again, rows)


def test_packed_stream_resumes_from_an_iterator_checkpoint(tmp_path, monkeypatch):
  monkeypatch.setattr(span_corruption_data, "DOCUMENTS_PER_GROUP", 3)
  objective = get_objective(t5_config())
  make = lambda: iter(objective.rows(tf.data.Dataset.range(200).map(
      lambda i: tf.range(tf.cast(i % 50 + 1, tf.int32)) + 5), SENTINEL, EOS, seed=2))
  iterator = make()
  for _ in range(7):
    next(iterator)
  path = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "ckpt"))
  expected = [next(iterator) for _ in range(5)]
  restored = make()
  tf.train.Checkpoint(iterator=restored).read(path).assert_consumed()
  for a, b in zip(expected, [next(restored) for _ in range(5)]):
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def tiny_model_and_params(config):
  """The model and random parameters of its shapes (drawn in numpy: no initializer to compile)."""
  model = models.build_model(config.model)
  module = models.family(config.model)
  inputs = module.example_inputs(module.make_config(config.model))
  shapes = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.key(0), **inputs)["params"]))
  rng = np.random.default_rng(0)
  return model, jax.tree_util.tree_map(lambda s: rng.normal(0, 0.3, s.shape).astype(np.float32), shapes)


def test_loss_accuracy_and_greedy_decode():
  config = t5_config()
  objective = get_objective(config)
  batch = objective.synthetic_batch(4, np.random.default_rng(0))
  batch["decoder_segment_ids"][3, 10:] = 0  # a shorter example
  batch["decoder_target_tokens"][3, 10:] = 0
  model, params = tiny_model_and_params(config)
  sums, metrics = jax.jit(lambda p, b: objective.forward(model, p, b))(params, batch)
  counts = objective.counts(batch)
  assert float(counts["targets"]) == (batch["decoder_segment_ids"] > 0).sum()
  apply = jax.jit(model.apply)
  logits = np.asarray(apply({"params": params}, batch["encoder_input_tokens"],
                            np.asarray(span_corruption.decoder_inputs(batch)), batch["encoder_segment_ids"],
                            batch["decoder_segment_ids"]), np.float64)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  weights = batch["decoder_segment_ids"] > 0
  nll = -np.take_along_axis(log_probs, batch["decoder_target_tokens"][..., None], -1)[..., 0]
  # T5's z-loss: 1e-4 * log(Z)^2 per target token, Z = sum(exp(logits)), added to the training loss only.
  log_z = np.log(np.exp(logits).sum(-1))
  z_loss = 1e-4 * (log_z[weights] ** 2).mean()
  assert config.objective.z_loss == 1e-4 and z_loss > 1e-4
  np.testing.assert_allclose(float(training_loss(sums, counts)), nll[weights].mean() + z_loss, rtol=1e-5)
  summary = objective.summarize(sums, metrics, counts)
  correct = logits.argmax(-1) == batch["decoder_target_tokens"]
  assert summary["targets_accuracy"] == pytest.approx(correct[weights].mean())
  assert summary["targets_loss"] == pytest.approx(nll[weights].mean(), rel=1e-5)
  assert summary["z_loss"] == pytest.approx(z_loss, rel=1e-5)
  assert summary["loss"] == pytest.approx(nll[weights].mean() + z_loss, rel=1e-5)

  predicted = np.asarray(objective.greedy_decode(model, params, batch))
  assert predicted.shape == (4, config.objective.targets_length)
  start = np.zeros_like(predicted)
  start[:, 1:] = predicted[:, :-1]  # teacher-forcing the predictions reproduces them (up to EOS)
  forced = np.asarray(apply({"params": params}, batch["encoder_input_tokens"], start,
                            batch["encoder_segment_ids"], np.ones_like(start))).argmax(-1)
  for row_forced, row_predicted in zip(forced, predicted):
    stop = list(row_predicted).index(EOS) + 1 if EOS in row_predicted else len(row_predicted)
    np.testing.assert_array_equal(row_forced[:stop], row_predicted[:stop])
    assert np.all(row_predicted[stop:] == 0)


def test_z_loss_gradient_pulls_the_normalizer_toward_one():
  config = t5_config()
  objective = get_objective(config)
  batch = objective.synthetic_batch(2, np.random.default_rng(0))
  model, params = tiny_model_and_params(config)

  def z_term(params):
    sums, _ = objective.forward(model, params, batch)
    return sums["z_loss"] / objective.counts(batch)["z_loss"]

  value_and_grad = jax.jit(jax.value_and_grad(z_term))
  value, grads = value_and_grad(params)
  norms = {"/".join(str(k.key) for k in path): float(np.linalg.norm(g))
           for path, g in jax.tree_util.tree_leaves_with_path(grads)}
  assert norms["token_embedder/embedding"] > 0 and norms["decoder/logits_dense/kernel"] > 0
  # A step down that gradient lowers log(Z)^2.
  stepped = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g / max(norms.values()), params, grads)
  assert float(value_and_grad(stepped)[0]) < float(value)
  off = get_objective(t5_config("objective.z_loss=0.0"))
  sums = jax.eval_shape(lambda: off.forward(model, params, batch)[0])
  assert "z_loss" not in sums and "z_loss" not in off.counts(batch)


def test_decoder_inputs_restart_at_each_packed_example():
  batch = {"decoder_target_tokens": np.array([[7, 8, 1, 9, 1, 0]]),
           "decoder_positions": np.array([[0, 1, 2, 0, 1, 0]])}
  np.testing.assert_array_equal(span_corruption.decoder_inputs(batch), [[0, 7, 8, 0, 9, 0]])


@pytest.mark.parametrize("overrides,message", [
    (["objective.targets_length=10"], "targets_length=14"),
    (["data.seq_len=2"], "too short"),
    (["data.extra_ids=0"], "extra_ids"),
    (["data.seq_len=2048", "objective.targets_length=600"], r"114 noise spans .* set --config.data.extra_ids=114"),
    (["objective.noise_density=0.9"], "non-noise"),
    (["objective.noise_density=1.5"], "noise_density"),
    (["objective.z_loss=-0.1"], "z_loss"),
])
def test_bad_settings_are_user_errors(overrides, message):
  with pytest.raises(UserError, match=message):
    get_objective(t5_config(*overrides))


def test_an_encoder_only_model_is_a_user_error():
  with pytest.raises(UserError, match="serves families t5; model.family is bert"):
    get_objective(config_lib.load_config("bert_tiny", ["objective.name=span_corruption"]))


class FakeTokenizer:
  def __init__(self, extra_ids: int, eos_id: int = EOS):
    self.extra_ids, self.eos_id, self.path = extra_ids, eos_id, "fake.model"

  def sentinel_id(self, index: int) -> int:
    return 4095 - index


def test_tokenizer_without_sentinels_or_with_another_eos_is_a_user_error():
  objective = get_objective(t5_config())
  _, stream = documents_stream(3)
  with pytest.raises(UserError, match="sentinels"):
    objective.dataset(stream.map(lambda t: {"token_ids": t}), FakeTokenizer(extra_ids=0), 0, True)
  with pytest.raises(UserError, match="eos_token_id"):
    objective.dataset(stream.map(lambda t: {"token_ids": t}), FakeTokenizer(extra_ids=100, eos_id=2), 0, True)
