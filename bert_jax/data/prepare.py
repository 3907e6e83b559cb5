"""A source tokenized once into sharded TFRecords of token ids that keep sentence and document boundaries.

A prepared directory holds
  train-00000-of-00032.tfrecord ...  one tf.train.Example per document: token_ids (int64 list: its sentences
  eval-00000-of-00008.tfrecord ...   concatenated), sentence_lengths (int64 list, every length > 0) and, with
                                     data.word_segmenter=jieba, word_starts (int64 list, 1 where a token begins
                                     a word: bert_jax/data/words.py)
  metadata.json                      the settings it was made from, the tokenizer and the counts (and bytes)
                                     per shard
The eval split is the source's first data.eval_tokens tokens, whole sentences (it ends with the sentence that
reaches the count; the rest of that document is trained on); with data.eval_documents > 0 (the older setting) it
is the first that many documents instead. The other documents go round-robin over data.shards training shards.
Everything is written into a private directory next to the target and published by renaming that directory, so a
prepared directory is complete or absent; a failed run removes what it wrote. When two runs prepare the same
directory at once, the first to publish wins and the other uses its data (or fails, when its settings differ).
Preparing again with the same settings and input is a no-op.
"""

import itertools
import json
import sys
from typing import Any, Iterator

from tqdm import tqdm

from bert_jax import storage
from bert_jax.data import files, words
from bert_jax.data.sources import Source
from bert_jax.data.tokenizer import Tokenizer
from bert_jax.errors import UserError

METADATA = "metadata.json"
FORMAT_VERSION = 1
EVAL_SHARDS = 8  # eval files when the eval split is set in tokens
ENCODE_BATCH = 512  # documents tokenized together (SentencePiece spreads a batch over every core)


def shard_name(split: str, index: int, count: int) -> str:
  return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def read_metadata(directory: str | storage.Path) -> dict | None:
  path = storage.path(directory) / METADATA
  if not path.is_file():
    return None
  try:
    return json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError):
    raise UserError(f"{path} is damaged (not JSON); delete {directory} and prepare the data again") from None


def check_complete(directory: str | storage.Path, metadata: dict) -> None:
  """Every shard the metadata names is there, with the size it was written with."""
  for shards in metadata["splits"].values():
    for shard in shards:
      path = storage.path(directory) / shard["file"]
      size = storage.size(path)
      if size is None or size != shard.get("bytes", size):
        what = "is missing" if size is None else f"has {size} bytes, not the {shard['bytes']} it was written with"
        raise UserError(f"{path} {what}; delete {directory} and prepare the data again")


def settings(config: Any, source: Source, tokenizer: Tokenizer) -> dict:
  return {"format": FORMAT_VERSION, "source": source.fingerprint(), "tokenizer_sha256": tokenizer.sha256(),
          "eval_documents": config.data.eval_documents, "eval_tokens": config.data.get("eval_tokens", 0),
          "word_segmenter": config.data.get("word_segmenter", "pieces"), "shards": config.data.shards}


def prepare(config: Any, source: Source, tokenizer: Tokenizer, directory: str | storage.Path) -> dict:
  """Writes the prepared directory unless it is already complete for these settings; returns its metadata."""
  directory = storage.path(directory)
  wanted = settings(config, source, tokenizer)
  found = read_metadata(directory)
  if found is not None:
    return _usable(found, wanted, directory, tokenizer)
  if config.data.shards <= 0 or config.data.eval_documents < 0 or wanted["eval_tokens"] < 0:
    raise UserError("data.shards must be positive and data.eval_tokens and data.eval_documents not negative")
  words.check(wanted["word_segmenter"])
  if directory.is_dir() and any(directory.iterdir()):
    raise _not_prepared_data(directory)
  directory.mkdir(parents=True, exist_ok=True)
  with files.private_directory(directory) as private:
    metadata = _write(config, source, tokenizer, private, wanted)
    if files.publish(private, directory):
      return metadata
  found = read_metadata(directory)  # another run published first
  if found is None:
    raise _not_prepared_data(directory)
  return _usable(found, wanted, directory, tokenizer)


def tokenizer_changed(directory: storage.Path, recorded: str, path: str | storage.Path) -> UserError:
  """The error for a tokenizer whose sha256 is not the one the data in `directory` was prepared with."""
  path = str(storage.path(path))
  what = (f"tokenizer {path} has changed since the data in {directory} was prepared with it (its sha256 differs)"
          if path == recorded else f"{directory} was prepared with tokenizer {recorded}, not {path}")
  return UserError(f"{what}; restore that tokenizer, or delete {directory} to prepare the data again")


def _not_prepared_data(directory: storage.Path) -> UserError:
  return UserError(f"{directory} holds files but no {METADATA}, so it is not prepared data; move them away or set "
                   "data.prepared_dir to a new directory")


def _usable(found: dict, wanted: dict, directory: storage.Path, tokenizer: Tokenizer) -> dict:
  changed = sorted(k for k in wanted if found["settings"].get(k) != wanted[k])
  if changed == ["tokenizer_sha256"]:
    raise tokenizer_changed(directory, found["tokenizer"], tokenizer.path)
  if changed:
    raise UserError(f"{directory} holds data prepared with other settings ({', '.join(changed)} differ); delete it "
                    "or set data.prepared_dir to a new directory")
  check_complete(directory, found)
  return found


def _write(config: Any, source: Source, tokenizer: Tokenizer, directory: storage.Path, wanted: dict) -> dict:
  eval_documents, eval_tokens = config.data.eval_documents, wanted["eval_tokens"]
  eval_shards = eval_documents if eval_documents else EVAL_SHARDS if eval_tokens else 1
  writers = _ShardWriters(directory, config.data.shards, max(1, min(config.data.shards, eval_shards)))
  try:
    with tqdm(desc=f"prepare {source.spec}", unit=" docs", mininterval=2.0, file=sys.stderr) as progress:
      for index, sentences in enumerate(_tokenized(source, tokenizer, wanted["word_segmenter"])):
        if eval_documents:
          held = len(sentences) if index < eval_documents else 0
        else:  # whole sentences until the eval split holds eval_tokens tokens
          held, missing = 0, eval_tokens - writers.tokens("eval")
          while held < len(sentences) and missing > 0:
            missing -= len(sentences[held][0])
            held += 1
        for split, part in (("eval", sentences[:held]), ("train", sentences[held:])):
          if part:
            writers.write(split, part)
        progress.update()
  finally:
    writers.close()
  for report in (source.skipped_report(), source.layout_hint()):
    if report:
      print(report, file=sys.stderr)
  if writers.documents("train") == 0:
    held = writers.documents("eval")
    raise UserError(f"data.source '{source.spec}' has no text for training" + (
        f": all {held} documents are held out for evaluation (lower data.eval_tokens or data.eval_documents)"
        if held else " (the corpus is empty)"))
  metadata = {"settings": wanted, "tokenizer": str(storage.path(tokenizer.path)), "vocab_size": tokenizer.vocab_size,
              "skipped_lines": source.skipped_lines, "splits": writers.shards()}
  (directory / METADATA).write_text(json.dumps(metadata, indent=1))
  return metadata


def _tokenized(source: Source, tokenizer: Tokenizer, segmenter: str) -> Iterator[list[tuple[list[int], Any]]]:
  """Per document, its sentences' (token ids, word_starts or None); sentences that tokenize to nothing are
  dropped."""
  documents = source.documents()
  while batch := list(itertools.islice(documents, ENCODE_BATCH)):
    texts = [sentence for document in batch for sentence in document]
    if segmenter == "jieba":
      encoded = iter(zip(*words.encode(tokenizer, texts)))
    else:
      encoded = ((ids, None) for ids in tokenizer.encode(texts))
    for document in batch:
      sentences = [sentence for sentence in (next(encoded) for _ in document) if sentence[0]]
      if sentences:
        yield sentences


class _ShardWriters:
  """Round-robin TFRecord writers per split."""

  def __init__(self, directory: storage.Path, train_shards: int, eval_shards: int):
    from bert_jax.data import records
    from bert_jax.data.tf_cpu import tf

    self.tf = tf
    self.paths = {split: [directory / shard_name(split, i, n) for i in range(n)]
                  for split, n in (("train", train_shards), ("eval", eval_shards))}
    self.writers = {split: [records.Writer(p) for p in paths] for split, paths in self.paths.items()}
    self.counts = {split: [{"documents": 0, "sentences": 0, "tokens": 0} for _ in paths]
                   for split, paths in self.paths.items()}
    self.next = {"train": 0, "eval": 0}

  def write(self, split: str, sentences: list[tuple[list[int], Any]]) -> None:
    """One document from its sentences' (token ids, word_starts or None)."""
    tf = self.tf
    token_ids, lengths = [t for ids, _ in sentences for t in ids], [len(ids) for ids, _ in sentences]
    feature = {"token_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=token_ids)),
               "sentence_lengths": tf.train.Feature(int64_list=tf.train.Int64List(value=lengths))}
    if sentences[0][1] is not None:
      feature["word_starts"] = tf.train.Feature(int64_list=tf.train.Int64List(
          value=[flag for _, starts in sentences for flag in starts]))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    shard = self.next[split]
    self.writers[split][shard].write(example.SerializeToString())
    counts = self.counts[split][shard]
    counts["documents"] += 1
    counts["sentences"] += len(lengths)
    counts["tokens"] += len(token_ids)
    self.next[split] = (shard + 1) % len(self.writers[split])

  def documents(self, split: str) -> int:
    return sum(c["documents"] for c in self.counts[split])

  def tokens(self, split: str) -> int:
    return sum(c["tokens"] for c in self.counts[split])

  def close(self) -> None:
    for writers in self.writers.values():
      for writer in writers:
        writer.close()

  def shards(self) -> dict:
    """{split: [{"file", "documents", "sentences", "tokens", "bytes"}, ...]} of the closed files."""
    return {split: [{"file": path.name, **counts, "bytes": storage.size(path)}
                    for path, counts in zip(self.paths[split], self.counts[split])] for split in self.paths}
