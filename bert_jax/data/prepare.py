"""A source tokenized once into sharded TFRecords of token ids that keep sentence and document boundaries.

A prepared directory holds
  train-00000-of-00032.tfrecord ...  one tf.train.Example per document: token_ids (int64 list: its sentences
  eval-00000-of-00008.tfrecord ...   concatenated) and sentence_lengths (int64 list, every length > 0)
  metadata.json                      the settings it was made from, the tokenizer and the counts per shard
The first data.eval_documents documents of the source form the eval split; the others go round-robin over
data.shards training shards. Shards are written under a temporary name and renamed once complete, and
metadata.json is written last: a directory without it is incomplete and is prepared again. A failed run
removes what it wrote. Preparing again with the same settings and input is a no-op.
"""

import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from tqdm import tqdm

from bert_jax.data.sources import Source
from bert_jax.data.tokenizer import Tokenizer
from bert_jax.errors import UserError

METADATA = "metadata.json"
FORMAT_VERSION = 1
ENCODE_BATCH = 512  # documents tokenized together (SentencePiece spreads a batch over every core)


def shard_name(split: str, index: int, count: int) -> str:
  return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def read_metadata(directory: str | Path) -> dict | None:
  path = Path(directory) / METADATA
  return json.loads(path.read_text()) if path.is_file() else None


def settings(config: Any, source: Source, tokenizer: Tokenizer) -> dict:
  return {"format": FORMAT_VERSION, "source": source.fingerprint(), "tokenizer_sha256": tokenizer.sha256(),
          "eval_documents": config.data.eval_documents, "shards": config.data.shards}


def prepare(config: Any, source: Source, tokenizer: Tokenizer, directory: str | Path) -> dict:
  """Writes the prepared directory unless it is already complete for these settings; returns its metadata."""
  directory = Path(directory)
  wanted = settings(config, source, tokenizer)
  found = read_metadata(directory)
  if found is not None:
    if found["settings"] == wanted:
      return found
    changed = sorted(k for k in wanted if found["settings"].get(k) != wanted[k])
    raise UserError(f"{directory} holds data prepared with other settings ({', '.join(changed)} differ); delete it "
                    "or set data.prepared_dir to a new directory")
  if config.data.shards <= 0 or config.data.eval_documents < 0:
    raise UserError("data.shards must be positive and data.eval_documents not negative")
  directory.mkdir(parents=True, exist_ok=True)
  for stale in [*directory.glob("train-*.tfrecord*"), *directory.glob("eval-*.tfrecord*")]:
    stale.unlink()
  writers = _ShardWriters(directory, config.data.shards, max(1, min(config.data.shards, config.data.eval_documents)))
  try:
    with tqdm(desc=f"prepare {source.spec}", unit=" docs", mininterval=2.0, file=sys.stderr) as progress:
      for index, (token_ids, lengths) in enumerate(_tokenized(source, tokenizer)):
        held_out = index < config.data.eval_documents
        writers.write("eval" if held_out else "train", token_ids, lengths)
        progress.update()
    report = source.skipped_report()
    if report:
      print(report, file=sys.stderr)
    if writers.documents("train") == 0:
      held = writers.documents("eval")
      raise UserError(f"data.source '{source.spec}' has no text for training" + (
          f": all {held} documents are held out for evaluation (lower data.eval_documents)" if held else
          " (the corpus is empty)"))
    shards = writers.finish()
  except BaseException:
    writers.abort()
    raise
  metadata = {"settings": wanted, "tokenizer": str(Path(tokenizer.path).resolve()), "vocab_size": tokenizer.vocab_size,
              "skipped_lines": source.skipped_lines, "splits": shards}
  partial = directory / (METADATA + ".partial")
  partial.write_text(json.dumps(metadata, indent=1))
  os.replace(partial, directory / METADATA)
  return metadata


def _tokenized(source: Source, tokenizer: Tokenizer) -> Iterator[tuple[list[int], list[int]]]:
  """(token ids, sentence lengths) per document; sentences that tokenize to nothing are dropped."""
  documents = source.documents()
  while batch := list(itertools.islice(documents, ENCODE_BATCH)):
    encoded = iter(tokenizer.encode([sentence for document in batch for sentence in document]))
    for document in batch:
      sentences = [ids for ids in (next(encoded) for _ in document) if ids]
      if sentences:
        yield [t for ids in sentences for t in ids], [len(ids) for ids in sentences]


class _ShardWriters:
  """Round-robin TFRecord writers per split, under temporary names until `finish` renames them."""

  def __init__(self, directory: Path, train_shards: int, eval_shards: int):
    from bert_jax.data.tf_cpu import tf

    self.tf = tf
    self.paths = {split: [directory / shard_name(split, i, n) for i in range(n)]
                  for split, n in (("train", train_shards), ("eval", eval_shards))}
    self.writers = {split: [tf.io.TFRecordWriter(str(p) + ".partial") for p in paths]
                    for split, paths in self.paths.items()}
    self.counts = {split: [{"documents": 0, "sentences": 0, "tokens": 0} for _ in paths]
                   for split, paths in self.paths.items()}
    self.next = {"train": 0, "eval": 0}

  def write(self, split: str, token_ids: list[int], lengths: list[int]) -> None:
    tf = self.tf
    example = tf.train.Example(features=tf.train.Features(feature={
        "token_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=token_ids)),
        "sentence_lengths": tf.train.Feature(int64_list=tf.train.Int64List(value=lengths))}))
    shard = self.next[split]
    self.writers[split][shard].write(example.SerializeToString())
    counts = self.counts[split][shard]
    counts["documents"] += 1
    counts["sentences"] += len(lengths)
    counts["tokens"] += len(token_ids)
    self.next[split] = (shard + 1) % len(self.writers[split])

  def documents(self, split: str) -> int:
    return sum(c["documents"] for c in self.counts[split])

  def finish(self) -> dict:
    for writers in self.writers.values():
      for writer in writers:
        writer.close()
    for paths in self.paths.values():
      for path in paths:
        os.replace(str(path) + ".partial", path)
    return {split: [{"file": path.name, **counts} for path, counts in zip(self.paths[split], self.counts[split])]
            for split in self.paths}

  def abort(self) -> None:
    for split, writers in self.writers.items():
      for writer, path in zip(writers, self.paths[split]):
        writer.close()
        for name in (str(path) + ".partial", str(path)):
          if os.path.exists(name):
            os.remove(name)
