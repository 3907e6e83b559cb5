"""Statistics of the masked-LM transform on thousands of sequences of the demo corpus: BERT (15% masked,
80/10/10, NSP), whole-word masking, ALBERT (n-grams with p(n) ~ 1/n, SOP), RoBERTa (full sentences)."""

import random

from data_helpers import originals, prepared_workdir, take, tiny_config
import numpy as np
from original_ports import ngram_lengths, pair_labels
import pytest

from bert_jax.data import pipeline, segments
from bert_jax.objectives import get_objective, masked_lm_data

BATCHES = 80  # x 32 sequences of 64 tokens


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return prepared_workdir(tmp_path_factory, tiny_config())


def read(config, workdir, batches: int) -> dict:
  """`batches` training batches, after checking the stream has exactly the objective's feature spec."""
  dataset = pipeline.train_dataset(config, get_objective(config), workdir)
  spec = get_objective(config).feature_spec(config.train.batch_size)
  assert {k: (tuple(v.shape), v.dtype.as_numpy_dtype) for k, v in dataset.element_spec.items()} == spec
  return take(dataset, batches)


def check_sequences(batch: dict, tokenizer, pairs: bool) -> None:
  """Frames, padding, segment ids and attention masks agree; predictions are sorted, unique and real."""
  ids, types, mask = originals(batch), batch["token_type_ids"], batch["attention_mask"]
  lengths = mask.sum(1)
  positions = np.arange(ids.shape[1])[None]
  assert ((mask == 1) == (positions < lengths[:, None])).all()
  assert ((ids == tokenizer.pad_id) == (mask == 0)).all()
  assert (ids[:, 0] == tokenizer.cls_id).all() and (ids[np.arange(len(ids)), lengths - 1] == tokenizer.sep_id).all()
  seps = (ids == tokenizer.sep_id).cumsum(1)
  if pairs:
    assert ((ids == tokenizer.sep_id).sum(1) == 2).all()
    first_sep = (seps == 0) | ((seps == 1) & (ids == tokenizer.sep_id))
    assert (types == ((~first_sep) & (mask == 1))).all()
  else:
    assert (types == 0).all()
  weights = batch["masked_weights"]
  count = weights.sum(1).astype(int)
  assert ((weights == 1) == (np.arange(weights.shape[1])[None] < count[:, None])).all()
  for row, n in zip(batch["masked_positions"], count):
    assert (np.diff(row[:n]) > 0).all() and (row[n:] == 0).all()
  rows, slots = np.nonzero(weights)
  assert (batch["masked_positions"][rows, slots] < lengths[rows]).all()


def masking_rates(batch: dict, tokenizer) -> tuple[float, np.ndarray]:
  """(masked / candidates, fractions of predictions shown as [MASK], as themselves, as another token)."""
  special = tokenizer.special_mask()
  ids = originals(batch)
  rows, slots = np.nonzero(batch["masked_weights"])
  positions = batch["masked_positions"][rows, slots]
  assert not special[batch["masked_ids"][rows, slots]].any()  # no special token is ever masked
  unmasked = np.ones(ids.shape, bool)
  unmasked[rows, positions] = False
  assert (batch["input_ids"][unmasked] == ids[unmasked]).all()
  shown = batch["input_ids"][rows, positions]
  assert not special[shown[shown != tokenizer.mask_id]].any()  # random replacements are ordinary tokens
  kinds = np.array([np.mean(shown == tokenizer.mask_id), np.mean(shown == ids[rows, positions])])
  return len(rows) / (~special[ids]).sum(), np.append(kinds, 1 - kinds.sum())


def original_label_rate(config, workdir, task: str) -> float:
  """The share of label 1 the original generator (tests/original_ports.py) gives on the same documents."""
  documents = pipeline.documents(config, workdir, "train").as_numpy_iterator()
  lengths = [list(d["sentence_lengths"][d["sentence_lengths"] > 0]) for d in documents]
  return float(np.mean(pair_labels(lengths * 10, config.data.seq_len, config.objective.short_seq_prob, task,
                                   random.Random(0))))


def test_bert_masking_and_nsp(workdir):
  config = tiny_config()
  tokenizer = pipeline.load_tokenizer(config, workdir)
  batch = read(config, workdir, BATCHES)
  check_sequences(batch, tokenizer, pairs=True)
  rate, kinds = masking_rates(batch, tokenizer)
  assert abs(rate - 0.15) < 0.01
  np.testing.assert_allclose(kinds, [0.8, 0.1, 0.1], atol=0.02)
  assert abs(batch["sentence_label"].mean() - original_label_rate(config, workdir, "nsp")) < 0.03


def test_whole_words_are_masked_whole(workdir):
  config = tiny_config("bert_tiny", "objective.whole_word=True")
  tokenizer = pipeline.load_tokenizer(config, workdir)
  batch = read(config, workdir, BATCHES // 2)
  rate, _ = masking_rates(batch, tokenizer)
  assert abs(rate - 0.15) < 0.01
  ids = originals(batch)
  candidate = ~tokenizer.special_mask()[ids]
  previous = np.pad(candidate[:, :-1], ((0, 0), (1, 0)))
  word = np.cumsum(candidate & (tokenizer.word_starts()[ids] | ~previous), axis=1)
  masked = np.zeros(ids.shape, bool)
  rows, slots = np.nonzero(batch["masked_weights"])
  masked[rows, batch["masked_positions"][rows, slots]] = True
  continuing = candidate[:, 1:] & (word[:, 1:] == word[:, :-1])
  assert (masked[:, 1:][continuing] == masked[:, :-1][continuing]).all()
  assert continuing[masked[:, 1:]].mean() > 0.2  # multi-piece words do get masked


def test_albert_ngrams_and_sop(workdir):
  config = tiny_config("albert_tiny")
  o = config.objective
  tokenizer = pipeline.load_tokenizer(config, workdir)
  batch = read(config, workdir, BATCHES // 2)
  check_sequences(batch, tokenizer, pairs=True)
  rate, _ = masking_rates(batch, tokenizer)
  assert abs(rate - 0.15) < 0.01
  assert abs(batch["sentence_label"].mean() - original_label_rate(config, workdir, "sop")) < 0.03

  # Whole words per n-gram, read from choose_spans on the same kind of sequences, against ALBERT's sampling
  # (tests/original_ports.py) on the same sequences: p(n) ~ 1/n, shortened alike where the budget runs out.
  assert o.whole_word and o.max_ngram == 3
  tables = masked_lm_data.Tables.from_tokenizer(tokenizer)
  documents = pipeline.documents(config, workdir, "train", shuffle=True)
  ids = segments.SpecialIds(tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id)
  sequences = segments.segment_pairs(documents, 64, "sop", 0.1, ids, seed=5)
  chosen = sequences.batch(64).map(lambda s: (s["input_ids"], masked_lm_data.choose_spans(
      s["input_ids"], s["seed"][0], tables, o.mask_rate, o.max_predictions, True, 3)))
  input_ids, span_ids = (np.concatenate(x) for x in zip(*chosen.take(24).as_numpy_iterator()))
  special, word_start = tokenizer.special_mask(), tokenizer.word_starts()
  candidate = ~special[input_ids]
  word_begins = candidate & (word_start[input_ids] | ~np.pad(candidate[:, :-1], ((0, 0), (1, 0))))
  span_words = np.bincount((span_ids + np.arange(len(span_ids))[:, None] * 64)[word_begins & (span_ids > 0)])
  ours = np.bincount(span_words[span_words > 0], minlength=4)
  port = np.zeros(4)
  rng, np_rng = random.Random(0), np.random.default_rng(0)
  for row in input_ids:
    for n in ngram_lengths(row[row != tokenizer.pad_id].tolist(), special, word_start, o.mask_rate,
                           o.max_predictions, 3, rng, np_rng):
      port[n] += 1
  ours, port = ours[1:] / ours[1:].sum(), port[1:] / port[1:].sum()
  p = np.array([1, 1 / 2, 1 / 3]) / (1 + 1 / 2 + 1 / 3)
  assert np.abs(ours - p).max() <= np.abs(port - p).max() + 0.01
  np.testing.assert_allclose(ours, port, atol=0.035)


def test_roberta_full_sentences(tmp_path_factory):
  config = tiny_config("roberta_tiny")
  workdir = prepared_workdir(tmp_path_factory, config)
  tokenizer = pipeline.load_tokenizer(config, workdir)
  assert tokenizer.pad_id == 1
  batch = read(config, workdir, BATCHES // 2)
  check_sequences(batch, tokenizer, pairs=False)
  assert "sentence_label" not in batch
  assert batch["attention_mask"].mean() > 0.8  # sequences are packed full across documents
  rate, kinds = masking_rates(batch, tokenizer)
  assert abs(rate - 0.15) < 0.01
  np.testing.assert_allclose(kinds, [0.8, 0.1, 0.1], atol=0.03)
