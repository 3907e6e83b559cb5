"""Synthetic inputs shared by the objective tests: ALBERT-style rows of whole words of one to three pieces
(tests/test_objectives_original.py, tests/test_spanbert.py) and XLNet's stream of token documents with a stand-in
tokenizer (tests/test_xlnet_objective.py, tests/test_xlnet_memory.py)."""

import numpy as np

# --- rows of words: [PAD] 0, [CLS] 1, [SEP] 2, [MASK] 3, [UNK] 4; ids 5..599 start a word, 600.. continue one ---

VOCAB, LENGTH = 1000, 128
SPECIAL = np.arange(VOCAB) < 5
WORD_START = np.arange(VOCAB) < 600


def word_sequences(count: int, seed: int = 0) -> np.ndarray:
  """[CLS] A [SEP] B [SEP] [PAD]... of words of one to three pieces."""
  cls, sep = 1, 2
  rng = np.random.default_rng(seed)
  rows = np.zeros((count, LENGTH), np.int32)
  for r in range(count):
    length = LENGTH if rng.random() < 0.8 else int(rng.integers(20, LENGTH))
    sizes = rng.choice([1, 2, 3], LENGTH, p=[0.6, 0.25, 0.15])
    pieces = rng.integers(600, VOCAB, sizes.sum())
    starts = np.cumsum(sizes) - sizes
    pieces[starts] = rng.integers(5, 600, LENGTH)
    a = int(starts[rng.integers(1, np.searchsorted(starts, length - 4))])  # A ends where a word does
    rows[r, :length] = [cls, *pieces[:a], sep, *pieces[a:length - 3], sep]
  return rows


# --- XLNet: documents of token ids 10..4095 in a stream, and the special ids a tokenizer would give ---

SEP, CLS, EOD = 4, 3, 2


class FakeTokenizer:
  sep_id, cls_id, eod_id = SEP, CLS, EOD

  def special_mask(self):
    return np.arange(4096) < 10


def stream_documents(count=120, seed=0):
  from bert_jax.data.tf_cpu import tf
  rng = np.random.default_rng(seed)
  docs = [rng.integers(10, 4096, rng.integers(30, 200)).astype(np.int32) for _ in range(count)]
  return docs, tf.data.Dataset.from_tensor_slices({"token_ids": tf.ragged.constant(docs)})
