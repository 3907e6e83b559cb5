"""The objectives against ports of the original generators (tests/original_ports.py): BERT's NSP and
ALBERT's SOP pairs, ALBERT's whole-word n-grams, and the recipes that choose them. Synthetic documents tell
where every token came from: document d, position p -> id 1000 * d + p."""

import random

import numpy as np
import pytest

from bert_jax import config as config_lib
from bert_jax.data import segments
from bert_jax.data.tf_cpu import tf
from bert_jax.objectives import masking
from data_helpers import as_dataset, synthetic_documents
from original_ports import ngram_lengths, pair_labels

IDS = segments.SpecialIds(cls=1, sep=2, pad=0)
SEQ_LEN = 32


def pairs(docs: list[dict], task: str, seed: int = 3) -> list[tuple[np.ndarray, np.ndarray, int]]:
  """(A, B, label) of every sequence segment_pairs makes from the documents, one finite pass."""
  dataset = as_dataset(docs)
  out = []
  for row in segments.segment_pairs(dataset, SEQ_LEN, task, 0.1, IDS, seed).as_numpy_iterator():
    ids = row["input_ids"][:row["attention_mask"].sum()]
    sep = np.flatnonzero(ids == IDS.sep)
    out.append((ids[1:sep[0]], ids[sep[0] + 1:sep[1]], int(row["sentence_label"])))
  return out


def sentence_of(docs: list[dict], tokens: np.ndarray) -> np.ndarray:
  """(document, sentence) of each token, as document * 1000 + sentence index."""
  d, p = tokens // 1000, tokens % 1000
  ends = [np.cumsum(docs[k - 1]["sentence_lengths"]) for k in d]
  return d * 1000 + np.array([np.searchsorted(e, q, side="right") for e, q in zip(ends, p)])


@pytest.fixture(scope="module")
def corpus():
  return synthetic_documents(1000)


@pytest.mark.parametrize("task", ["nsp", "sop"])
def test_pairs_follow_the_original_generator(corpus, task):
  made = pairs(corpus, task)
  ours = np.mean([label for *_, label in made])
  port = np.mean(pair_labels([list(d["sentence_lengths"]) for d in corpus] * 10, SEQ_LEN, 0.1, task,
                             random.Random(0)))
  # Label 1 more than half the time: a one-sentence chunk always gets its B from another document.
  assert len(made) > 2000 and port > 0.58
  assert abs(ours - port) < 0.03, (ours, port)
  for a, b, label in made:
    same_document = a[0] // 1000 == b[0] // 1000
    if not same_document:
      assert label == 1  # a random B, never from A's own document
      continue
    assert task == "sop" or label == 0
    # A and B of one document hold whole, different sentences: no pair is cut inside a sentence.
    assert not set(sentence_of(corpus, a)) & set(sentence_of(corpus, b))
    assert (b.min() > a.max()) == (label == 0)


def test_a_random_b_never_comes_from_its_own_document():
  """Every document (the first of a stream included, as every evaluation restarts the stream) takes a
  random B from another one; only a stream of one document has none other to offer."""
  docs = synthetic_documents(40, seed=1)
  whole, two = pairs(docs, "nsp"), pairs(docs[:2], "nsp")
  randoms = [(a[0] // 1000, b[0] // 1000) for a, b, label in whole + two if label]
  assert {a for a, _ in randoms} >= {1, 2} and all(a != b for a, b in randoms)
  assert {a[0] // 1000 for a, *_ in whole} == set(range(1, 41))  # the first one is not dropped
  alone = pairs(docs[4:5], "nsp")
  assert alone and all(a[0] // 1000 == b[0] // 1000 == 5 for a, b, _ in alone)


# --- ALBERT: whole-word n-grams --------------------------------------------------------------------------

VOCAB, LENGTH = 1000, 128
SPECIAL = np.arange(VOCAB) < 5  # [PAD] 0, [CLS] 1, [SEP] 2, [MASK] 3, [UNK] 4
WORD_START = np.arange(VOCAB) < 600  # ids 600.. continue the word before them


def word_sequences(count: int, seed: int = 0) -> np.ndarray:
  """[CLS] A [SEP] B [SEP] [PAD]... of words of one to three pieces."""
  rng = np.random.default_rng(seed)
  rows = np.zeros((count, LENGTH), np.int32)
  for r in range(count):
    length = LENGTH if rng.random() < 0.8 else int(rng.integers(20, LENGTH))
    sizes = rng.choice([1, 2, 3], LENGTH, p=[0.6, 0.25, 0.15])
    pieces = rng.integers(600, VOCAB, sizes.sum())
    starts = np.cumsum(sizes) - sizes
    pieces[starts] = rng.integers(5, 600, LENGTH)
    a = int(starts[rng.integers(1, np.searchsorted(starts, length - 4))])  # A ends where a word does
    rows[r, :length] = [IDS.cls, *pieces[:a], IDS.sep, *pieces[a:length - 3], IDS.sep]
  return rows


def test_albert_recipe_masks_ngrams_of_whole_words():
  objective = config_lib.load_config("albert_base").objective
  assert objective.whole_word and objective.max_ngram == 3
  rows = word_sequences(1500)
  tables = masking.Tables(tf.constant(SPECIAL), tf.constant(WORD_START),
                          tf.constant(np.flatnonzero(~SPECIAL).astype(np.int32)), 3)
  span_ids = masking.choose_spans(tf.constant(rows), tf.constant([0, 1], tf.int64), tables, objective.mask_rate,
                                  objective.max_predictions, objective.whole_word, objective.max_ngram).numpy()
  word = np.cumsum(~SPECIAL[rows] & WORD_START[rows], axis=1)
  continuing = ~SPECIAL[rows][:, 1:] & ~WORD_START[rows][:, 1:]
  assert (span_ids[:, 1:][continuing] == span_ids[:, :-1][continuing]).all()  # words are masked whole
  ours = np.zeros(objective.max_ngram + 1)
  for r, spans in enumerate(span_ids):
    for k in range(1, spans.max() + 1):
      ours[len(set(word[r][spans == k]))] += 1
  port = np.zeros(objective.max_ngram + 1)
  rng, np_rng = random.Random(0), np.random.default_rng(0)
  for row in rows:
    for n in ngram_lengths(list(row[row != IDS.pad]), SPECIAL, WORD_START, objective.mask_rate,
                           objective.max_predictions, objective.max_ngram, rng, np_rng):
      port[n] += 1
  ours, port = ours[1:] / ours[1:].sum(), port[1:] / port[1:].sum()
  p = 1 / np.arange(1, objective.max_ngram + 1)
  p /= p.sum()
  # Both fall short of 1/n the same way (an n-gram that would overshoot the budget is shortened).
  np.testing.assert_allclose(ours, port, atol=0.025)
  assert np.abs(ours - p).max() <= np.abs(port - p).max() + 0.01


def test_xlnet_recipes_read_the_data_both_ways():
  for name in ("xlnet_base", "xlnet_large"):
    assert config_lib.load_config(name).objective.bi_data
