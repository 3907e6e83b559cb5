"""Segment pairs (NSP / SOP / single) and full-sentence packing, checked exactly on synthetic documents whose
token ids tell where each token came from: document d, position p -> id 1000 * d + p."""

from data_helpers import as_dataset, synthetic_documents
import numpy as np
import pytest

from bert_jax.data import segments
from bert_jax.data.tf_cpu import tf

IDS = segments.SpecialIds(cls=1, sep=2, pad=0)
SEQ_LEN = 32


def split_sequence(row: dict) -> tuple[list[np.ndarray], int]:
  """The segments between [CLS]/[SEP] of one sequence, after checking its frame and padding."""
  ids, mask = row["input_ids"], row["attention_mask"]
  length = int(mask.sum())
  assert (mask[:length] == 1).all() and (mask[length:] == 0).all()
  assert (ids[length:] == IDS.pad).all() and ids[0] == IDS.cls and ids[length - 1] == IDS.sep
  seps = np.flatnonzero(ids[:length] == IDS.sep)
  bounds = [0, *seps]
  return [ids[a + 1:b] for a, b in zip(bounds[:-1], bounds[1:])], length


def contiguous(segment: np.ndarray) -> bool:
  return len(segment) == 0 or ((np.diff(segment) == 1).all() and len(set(segment // 1000)) == 1)


@pytest.mark.parametrize("task", ["nsp", "sop", "none"])
def test_segment_pairs(task):
  documents = synthetic_documents(60)
  rows = list(segments.segment_pairs(as_dataset(documents), SEQ_LEN, task, 0.1, IDS, seed=3).as_numpy_iterator())
  assert len(rows) > 100
  max_tokens = SEQ_LEN - (2 if task == "none" else 3)
  labels = []
  for row in rows:
    parts, length = split_sequence(row)
    assert len(parts) == (1 if task == "none" else 2)
    a, b = parts[0], parts[-1]
    assert len(a) >= 1 and contiguous(a) and contiguous(b)
    assert sum(len(p) for p in parts) <= max_tokens
    types = row["token_type_ids"]
    assert (types[:len(a) + 2] == 0).all() and (types[length:] == 0).all()
    assert (types[len(a) + 2:length] == (1 if task != "none" else 0)).all()
    label = int(row["sentence_label"])
    labels.append(label)
    if task == "none" or len(b) == 0:
      continue
    same_document = a[0] // 1000 == b[0] // 1000
    if task == "nsp":
      assert same_document != bool(label)
      assert not same_document or b.min() > a.max()
    if task == "sop":  # B from another document only for a one-sentence A, labelled 1 as in ALBERT's file
      assert (b.min() > a.max()) == (label == 0) if same_document else label == 1
  if task != "none":  # above one half: one-sentence chunks always take a random B (tests/test_objectives_original.py)
    assert 0.5 < np.mean(labels) < 0.72


def test_segment_pairs_depend_on_the_seed():
  documents = as_dataset(synthetic_documents(4))
  pairs, other = ([x["input_ids"].tolist() for x in segments.segment_pairs(
      documents, SEQ_LEN, "nsp", 0.1, IDS, seed=seed).as_numpy_iterator()] for seed in (3, 4))
  assert pairs != other


def test_truncation_matches_bert():
  """One token at a time off the longer segment (B on ties) until the pair fits."""
  rng = np.random.default_rng(0)
  a_len, b_len = rng.integers(0, 60, 500), rng.integers(0, 60, 500)
  a_keep, b_keep = (x.numpy() for x in segments._truncated_lengths(tf.constant(a_len), tf.constant(b_len), 29))
  for a, b, ka, kb in zip(a_len, b_len, a_keep, b_keep):
    while a + b > 29:
      a, b = (a - 1, b) if a > b else (a, b - 1)
    assert (a, b) == (ka, kb)


def test_full_sentences_pack_whole_sentences_across_documents():
  documents = synthetic_documents(40)
  rows = list(segments.full_sentences(as_dataset(documents), SEQ_LEN, IDS, seed=0).as_numpy_iterator())
  stream = np.concatenate([d["token_ids"] for d in documents])
  boundaries = {0}  # places in the stream where a piece may start: sentence starts, cuts of long sentences
  offset = 0
  for d in documents:
    for length in d["sentence_lengths"]:
      boundaries.update(offset + np.arange(0, length, SEQ_LEN - 2))
      offset += length
  starts = sorted(boundaries | {len(stream)})
  consumed = 0
  for row in rows:
    parts, length = split_sequence(row)
    assert (row["token_type_ids"] == 0).all() and row["sentence_label"] == 0
    content = np.concatenate(parts)
    assert (content == stream[consumed:consumed + len(content)]).all()  # in order, nothing lost or repeated
    assert consumed in boundaries
    # Each [SEP] inside a sequence separates two documents, and documents never meet without one.
    assert all(contiguous(p) and len(p) for p in parts)
    assert [p[0] // 1000 for p in parts[1:]] == [p[0] // 1000 + 1 for p in parts[:-1]]
    consumed += len(content)
    # Greedy: the next piece (with its [SEP] when it starts a document) would not have fitted.
    next_start = next(b for b in starts if b > consumed)
    new_document = stream[consumed] // 1000 != content[-1] // 1000
    assert length - 2 + (next_start - consumed) + new_document > SEQ_LEN - 2
  assert len(stream) - consumed < SEQ_LEN  # only the last unfinished sequence is dropped
