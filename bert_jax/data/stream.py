"""data.stream: documents tokenized on the fly in each process's tf.data pipeline, for corpora too large to prepare.

The documents are those bert_jax/data/prepare.py would write: the eval split is the source's head (the first
data.eval_tokens tokens, whole sentences, or the first data.eval_documents documents), the training documents are the
rest, the document the head ends in going on with its remaining sentences. Process i of P trains on files i::P when
the source has at least P files (in an order shuffled anew each pass), otherwise on training documents i::P of the
source (it reads them all and tokenizes its own).

A training stream is Dataset.range(...) of block numbers -> tf.numpy_function(block b): the BLOCK_DOCUMENTS raw
documents of block b of this process's endless sequence of passes, tokenized -> one element per document. The range's
counter is the position tf.train.Checkpoint saves (the shuffle buffers downstream are saved with their contents); the
reader behind the function keeps its place in the source for the block each consumer asks for next, and for any other
block (after a restore) skips to it by reading, not tokenizing, the documents before it (at most one pass).
"""

from collections.abc import Iterator
import itertools
import threading
from typing import Any

import numpy as np

from bert_jax.data import prepare as prepare_lib, words
from bert_jax.data.sources import Source
from bert_jax.data.tf_cpu import tf
from bert_jax.data.tokenizer import Tokenizer
from bert_jax.errors import UserError

BLOCK_DOCUMENTS = 64  # raw documents tokenized in one call
READERS = 8  # positions in the source kept open (a pipeline may read its stream of documents more than once)
Sentences = list[tuple[list[int], Any]]  # a document's sentences' (token ids, word_starts or None)


def head(config: Any, source: Source, tokenizer: Tokenizer) -> tuple[list[Sentences], tuple[int, int, int]]:
  """The held-out documents and where training starts: (file, document number in it, encoded sentences of that
  document held out); `number` counts over the whole source when it is not files."""
  eval_documents, eval_tokens = config.data.eval_documents, config.data.get("eval_tokens", 0)
  segmenter = words.spec(config.data)
  if not eval_documents and not eval_tokens:
    return [], (0, 0, 0)
  held_out, tokens, numbered = [], 0, _numbered(source)
  while batch := list(itertools.islice(numbered, prepare_lib.ENCODE_BATCH)):
    for (file, number, _), sentences in zip(batch, prepare_lib.encoded(tokenizer, segmenter, [d for *_, d in batch])):
      if not sentences:
        continue
      held = len(sentences)
      if not eval_documents:
        held = 0
        while held < len(sentences) and tokens < eval_tokens:
          tokens += len(sentences[held][0])
          held += 1
      held_out.append(sentences[:held])
      if (len(held_out) >= eval_documents) if eval_documents else (tokens >= eval_tokens):
        return held_out, ((file, number, held) if held < len(sentences) else (file, number + 1, 0))
  raise UserError(f"data.source '{source.spec}' has no text for training: all {len(held_out)} documents are held out "
                  "for evaluation (lower data.eval_tokens or data.eval_documents)")


def _numbered(source: Source) -> Iterator[tuple[int, int, list[str]]]:
  """(file, number, sentences) of every document: numbered within its file, or over the source when not files."""
  if source.kind in ("text", "jsonl"):
    source.new_pass()
    for file in range(len(source.files)):
      for number, document in enumerate(source.file_documents(file)):
        yield file, number, document
  else:
    for number, document in enumerate(source.documents()):
      yield 0, number, document


def by_file(source: Source, process_count: int) -> bool:
  return source.kind in ("text", "jsonl") and len(source.files) >= process_count


def share(source: Source, start: tuple[int, int, int], index: int, count: int, order_seed: Any = None
          ) -> Iterator[tuple[list[str], int]]:
  """One pass over process `index`'s training documents: (sentences, encoded sentences held out of it). With an
  order_seed, its files in the order that seed shuffles them to."""
  if by_file(source, count):
    files = [f for f in range(start[0], len(source.files)) if f % count == index]
    if order_seed is not None:
      files = list(np.random.default_rng(order_seed).permutation(files))
    source.new_pass()
    for file in files:
      for number, document in enumerate(source.file_documents(int(file))):
        if (file, number) >= start[:2]:
          yield document, start[2] if (file, number) == start[:2] else 0
    return
  training = (d for d in _numbered(source) if d[:2] >= start[:2])
  for position, (file, number, document) in enumerate(training):
    if position % count == index:
      yield document, start[2] if (file, number) == start[:2] else 0


class Reader:
  """The tokenized documents of block b of a process's endless training documents (pass p's files in an order
  seeded by (seed, p)), as flat arrays: (token_ids, sentence_lengths, word_starts, token offsets [D+1], sentence
  offsets [D+1])."""

  def __init__(self, config: Any, source: Source, tokenizer: Tokenizer, start: tuple[int, int, int], index: int,
               count: int, seed: int):
    self.source, self.tokenizer, self.start, self.index, self.count, self.seed = (source, tokenizer, start, index,
                                                                                    count, seed)
    self.segmenter = words.spec(config.data)
    self.lock = threading.Lock()  # a restore may ask while a call of the iterator it replaces still runs
    self.readers: dict[int, list[Iterator]] = {}  # by the block each reads next: one per consumer of the stream

  def _endless(self, skip: int) -> Iterator[tuple[list[str], int]]:
    for number in itertools.count():
      found = 0
      for document in share(self.source, self.start, self.index, self.count, (self.seed, number)):
        found += 1
        if skip:
          skip -= 1
        else:
          yield document
      if not found:
        raise UserError(f"process {self.index} of {self.count} gets no training documents of data.source "
                        f"'{self.source.spec}'; add text, or use fewer processes")
      skip %= found

  def __call__(self, block) -> tuple[np.ndarray, ...]:
    with self.lock:
      block = int(block)
      waiting = self.readers.get(block)
      documents = waiting.pop() if waiting else self._endless(block * BLOCK_DOCUMENTS)
      if not waiting:
        self.readers.pop(block, None)
      raw = list(itertools.islice(documents, BLOCK_DOCUMENTS))
      self.readers.setdefault(block + 1, []).append(documents)
      while sum(len(r) for r in self.readers.values()) > READERS:  # those of an iterator a restore replaced
        self.readers.pop(next(iter(self.readers)))
    encoded = prepare_lib.encoded(self.tokenizer, self.segmenter, [d for d, _ in raw])
    return flat([sentences[held:] for sentences, (_, held) in zip(encoded, raw)])


def flat(documents: list[Sentences]) -> tuple[np.ndarray, ...]:
  """Documents (empty ones left out) as (token_ids, sentence_lengths, word_starts, token offsets, sentence offsets)."""
  documents = [d for d in documents if d]
  ids = [np.asarray(t, np.int32) for d in documents for t, _ in d]
  starts = [np.asarray(s, np.int32) for d in documents for _, s in d if s is not None]
  tokens = np.cumsum([0] + [sum(len(t) for t, _ in d) for d in documents])
  sentences = np.cumsum([0] + [len(d) for d in documents])
  return (np.concatenate(ids or [np.zeros(0, np.int32)]), np.asarray([len(t) for t in ids], np.int32).reshape(-1),
          np.concatenate(starts or [np.zeros(0, np.int32)]), tokens.astype(np.int32), sentences.astype(np.int32))


def _split(arrays, word_starts: bool):
  """A dataset of the documents in flat arrays (see `flat`): {"token_ids", "sentence_lengths"[, "word_starts"]}."""
  ids, lengths, starts, tokens, sentences = arrays

  def document(d):
    found = {"token_ids": ids[tokens[d]:tokens[d + 1]], "sentence_lengths": lengths[sentences[d]:sentences[d + 1]]}
    return {**found, "word_starts": starts[tokens[d]:tokens[d + 1]]} if word_starts else found

  return tf.data.Dataset.range(tf.size(tokens, out_type=tf.int64) - 1).map(document)


def train_documents(config: Any, source: Source, tokenizer: Tokenizer, index: int, count: int, seed: int):
  """Process `index`'s training documents, endlessly, tokenized inside the pipeline (shuffling is the caller's)."""
  start = head(config, source, tokenizer)[1]
  if not any(True for _ in share(source, start, index, count)):
    raise UserError(f"process {index} of {count} gets no training documents of data.source '{source.spec}'; add "
                    "text, or use fewer processes")
  reader = Reader(config, source, tokenizer, start, index, count, seed)

  @tf.autograph.experimental.do_not_convert
  def tokenized(block):
    arrays = tf.numpy_function(reader, [block], [tf.int32] * 5, stateful=True)
    for array in arrays:
      array.set_shape([None])
    return _split(arrays, config.data.get("word_segmenter", "pieces") != "pieces")

  options = tf.data.Options()  # the reader is state outside the graph that skips to the saved block on restore
  options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
  return tf.data.Dataset.range(np.iinfo(np.int64).max).flat_map(tokenized).with_options(options)


def eval_documents(config: Any, source: Source, tokenizer: Tokenizer, index: int, count: int):
  """Process `index`'s held-out documents (every count-th), one pass."""
  mine = head(config, source, tokenizer)[0][index::count]
  if not mine:
    raise UserError(f"the eval split gives process {index} of {count} no documents; set data.eval_tokens > 0 (or "
                    "raise it)")
  arrays = tuple(tf.constant(a) for a in flat(mine))
  return _split(arrays, config.data.get("word_segmenter", "pieces") != "pieces")
