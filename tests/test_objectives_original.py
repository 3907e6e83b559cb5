"""The objectives against ports of the original generators (tests/original_ports.py): BERT's NSP and
ALBERT's SOP pairs, ALBERT's whole-word n-grams, XLNet's attention masks, and the recipes that choose
them. Synthetic documents tell where every token came from: document d, position p -> id 1000 * d + p."""

import random

from data_helpers import as_dataset, synthetic_documents
import numpy as np
from objective_helpers import SPECIAL, WORD_START, word_sequences
from original_ports import ngram_lengths, pair_labels, xlnet_local_perm, xlnet_perm_mask
import pytest

from bert_jax import config as config_lib
from bert_jax.data import segments
from bert_jax.data.tf_cpu import tf
from bert_jax.objectives import get_objective, masked_lm_data
from bert_jax.objectives.permutation_lm import permutation_mask

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

# Rows of words (tests/objective_helpers.py): [PAD] 0, [CLS] 1, [SEP] 2, [MASK] 3, [UNK] 4; ids 600.. continue a word.


def test_albert_recipe_masks_ngrams_of_whole_words():
  objective = config_lib.load_config("albert_base").objective
  assert objective.whole_word and objective.max_ngram == 3
  rows = word_sequences(1500)
  tables = masked_lm_data.Tables(tf.constant(SPECIAL), tf.constant(WORD_START),
                          tf.constant(np.flatnonzero(~SPECIAL).astype(np.int32)), 3)
  span_ids = masked_lm_data.choose_spans(tf.constant(rows), tf.constant([0, 1], tf.int64), tables, objective.mask_rate,
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


# --- XLNet: the attention mask of a factorization order -----------------------------------------------------

XLNET_SEP, XLNET_CLS = 4, 3


class XLNetTokenizer:
  sep_id, cls_id, eod_id = XLNET_SEP, XLNET_CLS, 2

  def special_mask(self):
    return np.arange(4096) < 10


def xlnet_examples(overrides: list[str], count: int) -> tuple[int, int, list[dict]]:
  """(reuse_len, perm_size, examples) of xlnet_tiny (seq_len 64) on random documents."""
  config = config_lib.load_config("xlnet_tiny", overrides)
  rng = np.random.default_rng(0)
  docs = [rng.integers(10, 4096, rng.integers(30, 200)).astype(np.int32) for _ in range(100)]
  documents = tf.data.Dataset.from_tensor_slices({"token_ids": tf.ragged.constant(docs)})
  examples = get_objective(config).dataset(documents, XLNetTokenizer(), 5, True)
  return config.model.reuse_len, config.objective.perm_size, list(examples.take(count).as_numpy_iterator())


def release_order(perm_rank_L: np.ndarray, reuse_len: int, perm_size: int) -> np.ndarray:
  """The release's `index` (the place of each position in its part) for the order an example encodes: the places
  perm_rank gives (those above the part's context rank), the rest of each part's block permutation filled in.
  Only the context is left to the filling, and the release's mask does not depend on the context's places."""
  L = len(perm_rank_L)
  index = []
  for part, (begin, end) in enumerate([(0, reuse_len), (reuse_len, L)] if reuse_len else [(0, L)]):
    local = perm_rank_L[begin:end] - part * (L + 1) - 1
    offsets = {k % perm_size: place % perm_size for k, place in enumerate(local) if place >= 0}
    free = iter(sorted(set(range(perm_size)) - set(offsets.values())))
    offsets.update({k: next(free) for k in range(perm_size) if k not in offsets})
    index.append(np.array([k - k % perm_size + offsets[k % perm_size] for k in range(end - begin)]))
  return np.concatenate(index)


def test_xlnet_local_perm_port_by_hand():
  # a SEP b c CLS, b and CLS masked; the order a, c, CLS, b, SEP (a and c are context).
  inputs = np.array([10, XLNET_SEP, 11, 12, XLNET_CLS])
  blocked, target = xlnet_local_perm(inputs, np.array([0, 0, 1, 0, 1], bool), np.array([0, 4, 3, 1, 2]),
                                     XLNET_SEP, XLNET_CLS)
  np.testing.assert_array_equal(target, [0, 0, 1, 0, 0])  # a masked <cls> is still no target
  np.testing.assert_array_equal(blocked.astype(int), [
      [0, 1, 1, 0, 1],  # context: context only
      [0, 0, 0, 0, 0],  # SEP, last: everything, itself included
      [0, 1, 1, 0, 0],  # b: context and CLS, not itself
      [0, 1, 1, 0, 1],
      [0, 1, 1, 0, 0]])  # CLS: context and itself


@pytest.mark.parametrize("overrides", [
    ["objective.bi_data=False"],  # a reuse part of 32 with its own order, then the rest
    ["objective.bi_data=True", "model.reuse_len=0", "model.mem_len=0"],  # one part, half the examples reversed
])
def test_xlnet_masks_equal_the_release(overrides):
  """perm_mask of every example (the loss's permutation_mask of the data's perm_rank / is_target) equals the port of
  the release's _local_perm on the same tokens, targets and order, rows and columns of <sep> and <cls> included."""
  reuse_len, perm_size, examples = xlnet_examples(overrides, 120)
  assert len(examples) == 120
  rank_BL = np.stack([e["perm_rank"] for e in examples])
  ours_BLL = np.asarray(permutation_mask(rank_BL, np.stack([e["is_target"] for e in examples])))
  func = 0
  for e, ours_LL in zip(examples, ours_BLL):
    ids, target = e["input_ids"], e["is_target"].astype(bool)
    port_LL, port_target = xlnet_perm_mask(ids, target, release_order(e["perm_rank"], reuse_len, perm_size),
                                           reuse_len, XLNET_SEP, XLNET_CLS)
    np.testing.assert_array_equal(target, port_target)
    np.testing.assert_array_equal(ours_LL, port_LL)
    func += np.isin(ids, [XLNET_SEP, XLNET_CLS]).sum()
  assert func == 3 * len(examples)
