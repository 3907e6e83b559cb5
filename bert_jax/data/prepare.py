"""A source tokenized once into sharded TFRecords of token ids that keep sentence and document boundaries.

A prepared directory holds
  train-00000-of-00032.tfrecord ...  one tf.train.Example per document: token_ids (int64 list: its sentences
  eval-00000-of-00008.tfrecord ...   concatenated), sentence_lengths (int64 list, every length > 0) and, with
                                     data.word_segmenter=jieba, word_starts (int64 list, 1 where a token begins
                                     a word: bert_jax/data/words.py; jieba_pos: flags of ERNIE's knowledge units,
                                     bert_jax/data/knowledge.py)
  metadata.json                      the settings it was made from, the tokenizer and the counts (and bytes)
                                     per shard
The eval split is the source's first data.eval_tokens tokens, whole sentences (it ends with the sentence that
reaches the count; the rest of that document is trained on); with data.eval_documents > 0 (the older setting) it
is the first that many documents instead. The other documents go round-robin over data.shards training shards, or,
from a source of at least data.shards files, file k's to shard k % data.shards (see _placed).
Everything is written into a private directory next to the target and published by renaming that directory, so a
prepared directory is complete or absent; a failed run removes what it wrote. When two runs prepare the same
directory at once, the first to publish wins and the other uses its data (or fails, when its settings differ).
Preparing again with the same settings and input is a no-op.

With P processes (a pod's, or `bert-jax prepare --process-index i --process-count P` on P machines), process i
tokenizes and writes the training shards k with k % P == i (process 0 the eval shards too) into one staging
directory, .NAME.shares-of-P next to the target (in a bucket, the target itself), then its manifest
share-0000i-of-0000P.json; process 0 waits for every manifest, writes metadata.json and publishes. The files are
byte for byte those one process writes.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
import functools
import itertools
import json
import sys
import time
from typing import Any

from tqdm import tqdm

from bert_jax.data import knowledge, words
from bert_jax.data.sources import Source
from bert_jax.data.tokenizer import Tokenizer
from bert_jax.errors import UserError
from bert_jax.files import atomic, storage

METADATA = "metadata.json"
FORMAT_VERSION = 1
EVAL_SHARDS = 8  # eval files when the eval split is set in tokens
ENCODE_BATCH = 512  # documents tokenized together (SentencePiece spreads a batch over every core)
WAIT_SECONDS = 2.0  # between looks for another process's output


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
          "word_segmenter": config.data.get("word_segmenter", "pieces"), "shards": config.data.shards,
          **_lexicon(words.spec(config.data))}


def _lexicon(segmenter: str) -> dict:
  """jieba_pos's part in the settings: the hash of its entity lexicon ("" without one)."""
  name, _, lexicon = segmenter.partition(":")
  return {"entity_lexicon_sha256": knowledge.lexicon_sha256(lexicon) if lexicon else ""} if name == "jieba_pos" else {}


def prepare(config: Any, source: Source, tokenizer: Tokenizer, directory: str | storage.Path, process_index: int = 0,
            process_count: int = 1, wait: bool = True) -> dict | None:
  """Writes the prepared directory unless it is already complete for these settings; returns its metadata. With
  process_count > 1 this process writes its share (see _placed) and process 0 the metadata once every share is in;
  the other processes then wait for it, or return None without `wait`."""
  directory = storage.path(directory)
  wanted = settings(config, source, tokenizer)
  found = read_metadata(directory)
  if found is not None:
    return _usable(found, wanted, directory, tokenizer, strict=process_index == 0)
  if config.data.shards <= 0 or config.data.eval_documents < 0 or wanted["eval_tokens"] < 0:
    raise UserError("data.shards must be positive and data.eval_tokens and data.eval_documents not negative")
  check_process(process_index, process_count)
  words.check(wanted["word_segmenter"])
  if process_count > 1:
    return _prepare_share(config, source, tokenizer, directory, wanted, process_index, process_count, wait)
  if directory.is_dir() and any(directory.iterdir()):
    raise _not_prepared_data(directory)
  directory.mkdir(parents=True, exist_ok=True)
  with atomic.private_directory(directory) as private:
    metadata = _merged(wanted, tokenizer, [_write_share(config, source, tokenizer, private, wanted, 0, 1)])
    (private / METADATA).write_text(json.dumps(metadata, indent=1))
    if atomic.publish(private, directory):
      return metadata
  found = read_metadata(directory)  # another run published first
  if found is None:
    raise _not_prepared_data(directory)
  return _usable(found, wanted, directory, tokenizer)


def check_process(index: int, count: int) -> None:
  if not 0 <= index < count:
    raise UserError(f"process index {index} is not one of the {count} processes (0 to {count - 1})")


def wait_for(find: Callable[[], Any], message: str) -> Any:
  """What `find` returns once it is not None, printing `message` once if it has to wait."""
  announced = False
  while (found := find()) is None:
    if not announced:
      print(message, file=sys.stderr)
      announced = True
    time.sleep(WAIT_SECONDS)
  return found


def share_name(process_index: int, process_count: int) -> str:
  return f"share-{process_index:05d}-of-{process_count:05d}.json"


def _prepare_share(config: Any, source: Source, tokenizer: Tokenizer, directory: storage.Path, wanted: dict,
                   index: int, count: int, wait: bool) -> dict | None:
  """Every process writes its shards and then its manifest into one staging directory next to the target (in an
  object store, the target itself); process 0 waits for all the manifests, writes the metadata and publishes the
  directory. A share already written with these settings (a restarted run) is kept. Two runs must not prepare one
  directory with the same process count at once."""
  staging = directory if storage.is_url(directory) else directory.with_name(f".{directory.name}.shares-of-{count}")
  if not storage.is_url(directory) and directory.is_dir() and any(directory.iterdir()):
    raise _not_prepared_data(directory)
  staging.mkdir(parents=True, exist_ok=True)
  if _share(staging, index, count, wanted) is None:
    share = _write_share(config, source, tokenizer, staging, wanted, index, count)
    atomic.write_bytes(staging / share_name(index, count), json.dumps(share).encode())
  if index == 0:
    shares = [wait_for(functools.partial(_share, staging, p, count, wanted),
                       f"process 0: waiting for process {p} of {count} to write its share of {directory}")
              for p in range(count)]
    metadata = _merged(wanted, tokenizer, shares)
    kept = {METADATA} | {shard["file"] for shards in metadata["splits"].values() for shard in shards}
    for path in staging.iterdir():  # the manifests, and what an earlier attempt with other settings left
      if path.name not in kept:
        path.unlink()
    atomic.write_bytes(staging / METADATA, json.dumps(metadata, indent=1).encode())
    if staging == directory or atomic.publish(staging, directory):
      return metadata
  if not wait:
    return None
  found = wait_for(lambda: read_metadata(directory), f"process {index}: waiting for process 0 to publish {directory}")
  return _usable(found, wanted, directory, tokenizer, strict=False)


def _share(staging: storage.Path, index: int, count: int, wanted: dict) -> dict | None:
  """A process's manifest once it and every shard it names are complete, for these settings."""
  path = staging / share_name(index, count)
  if not path.is_file():
    return None
  share = json.loads(path.read_text())
  if _comparable(share["settings"]) != _comparable(wanted):
    return None  # left by an attempt with other settings: its process writes it again
  if any(storage.size(staging / e["file"]) != e["bytes"] for entries in share["splits"].values() for e in entries):
    return None
  return share


def _comparable(found: dict) -> dict:
  """Settings as two hosts compare them: a source file's modification time may differ between their copies."""
  source = {**found["source"], "files": [entry[:2] for entry in found["source"]["files"]]}
  return {**found, "source": source}


def _merged(wanted: dict, tokenizer: Tokenizer, shares: list[dict]) -> dict:
  """The metadata of every process's shards (each process counts the skipped lines of the files it read alone, or
  every process those of the whole source)."""
  splits = {split: [{k: v for k, v in entry.items() if k != "index"}
                    for entry in sorted((e for share in shares for e in share["splits"][split]),
                                        key=lambda e: e["index"])]
            for split in ("train", "eval")}
  if not any(shard["documents"] for shard in splits["train"]):
    held = sum(shard["documents"] for shard in splits["eval"])
    raise UserError(f"data.source '{shares[0]['spec']}' has no text for training" + (
        f": all {held} documents are held out for evaluation (lower data.eval_tokens or data.eval_documents)"
        if held else " (the corpus is empty)"))
  skipped = sum(share["skipped_lines"] for share in shares) if shares[0]["by_file"] else shares[0]["skipped_lines"]
  return {"settings": wanted, "tokenizer": str(storage.path(tokenizer.path)), "vocab_size": tokenizer.vocab_size,
          "skipped_lines": skipped, "splits": splits}


def tokenizer_changed(directory: storage.Path, recorded: str, path: str | storage.Path) -> UserError:
  """The error for a tokenizer whose sha256 is not the one the data in `directory` was prepared with."""
  path = str(storage.path(path))
  what = (f"tokenizer {path} has changed since the data in {directory} was prepared with it (its sha256 differs)"
          if path == recorded else f"{directory} was prepared with tokenizer {recorded}, not {path}")
  return UserError(f"{what}; restore that tokenizer, or delete {directory} to prepare the data again")


def _not_prepared_data(directory: storage.Path) -> UserError:
  return UserError(f"{directory} holds files but no {METADATA}, so it is not prepared data; move them away or set "
                   "data.prepared_dir to a new directory")


def _usable(found: dict, wanted: dict, directory: storage.Path, tokenizer: Tokenizer, strict: bool = True) -> dict:
  """The metadata found, when it was prepared with the settings wanted (not `strict`: but for the source files'
  modification times, which another host's copies of them need not share)."""
  ours, theirs = (wanted, found["settings"]) if strict else (_comparable(wanted), _comparable(found["settings"]))
  changed = sorted(k for k in ours if theirs.get(k) != ours[k])
  if changed == ["tokenizer_sha256"]:
    raise tokenizer_changed(directory, found["tokenizer"], tokenizer.path)
  if changed:
    raise UserError(f"{directory} holds data prepared with other settings ({', '.join(changed)} differ); delete it "
                    "or set data.prepared_dir to a new directory")
  check_complete(directory, found)
  return found


def _write_share(config: Any, source: Source, tokenizer: Tokenizer, directory: storage.Path, wanted: dict,
                 index: int, count: int) -> dict:
  """Writes this process's shards; returns its manifest: the settings, the lines skipped and the shards written."""
  eval_documents, eval_tokens, shards = config.data.eval_documents, wanted["eval_tokens"], config.data.shards
  eval_shards = max(1, min(shards, eval_documents if eval_documents else EVAL_SHARDS if eval_tokens else 1))
  writers = _ShardWriters(directory, {"train": (shards, [i for i in range(shards) if i % count == index]),
                                      "eval": (eval_shards, range(eval_shards) if index == 0 else [])})
  try:
    with tqdm(desc=f"prepare {source.spec}" + (f" ({index} of {count})" if count > 1 else ""), unit=" docs",
              mininterval=2.0, file=sys.stderr) as progress:
      for split, shard, sentences in _placed(source, tokenizer, words.spec(config.data), eval_documents, eval_tokens,
                                             (shards, eval_shards), index, count):
        writers.write(split, shard, sentences)
        progress.update()
  finally:
    writers.close()
  if index == 0 or by_file(source, shards):
    for report in (source.skipped_report(), source.layout_hint()):
      if report:
        print(report, file=sys.stderr)
  return {"settings": wanted, "spec": source.spec, "skipped_lines": source.skipped_lines,
          "by_file": by_file(source, shards), "splits": writers.shards()}


def by_file(source: Source, shards: int) -> bool:
  """Whether training shards are made of whole source files (a source of at least `shards` files)."""
  return source.kind in ("text", "jsonl") and len(source.files) >= shards


def _placed(source: Source, tokenizer: Tokenizer, segmenter: str, eval_documents: int, eval_tokens: int,
            shards: tuple[int, int], index: int, count: int) -> Iterator[tuple[str, int, list]]:
  """(split, shard, sentences) of the documents this process writes.

  Every process tokenizes the source's head, the eval split (whole sentences until eval_tokens tokens, or the
  first eval_documents documents), which process 0 writes round-robin over the eval shards; the document the head
  ends in goes on in the training split. Training shard k is written by process k % count, and holds
    - with at least as many files as shards (by_file): the training documents of files k, k + shards, ..., so that
      each process reads only its files;
    - otherwise: training documents k, k + shards, ... in source order, which every process reads, tokenizing only
      its own.
  Either way the shards are the same whatever the process count. Documents whose sentences tokenize to nothing
  are dropped (after the head, they keep their place in the round)."""
  train_shards, eval_shards = shards
  head: dict[str, Any] = {"tokens": 0, "documents": 0, "end": None}  # end: (file, document in it, sentences held of it)

  def hold(sentences: list, at: tuple[int, int]) -> Iterator[tuple[str, int, list]]:
    held = len(sentences)
    if not eval_documents:
      held, missing = 0, eval_tokens - head["tokens"]
      while held < len(sentences) and missing > 0:
        missing -= len(sentences[held][0])
        held += 1
      head["tokens"] = eval_tokens - missing
    if index == 0:
      yield "eval", head["documents"] % eval_shards, sentences[:held]
    head["documents"] += 1
    if (head["documents"] >= eval_documents) if eval_documents else (head["tokens"] >= eval_tokens):
      head["end"] = (*at, held)

  if not eval_documents and not eval_tokens:
    head["end"] = (0, 0, 0)
  if not by_file(source, train_shards):
    documents, start, first = source.documents(), 0, 0 if head["end"] else None  # first: training document 0
    while batch := list(itertools.islice(documents, ENCODE_BATCH)):
      batch_sentences: Sequence[list[tuple[list[int], Any]] | None]
      if first is None:
        batch_sentences = encoded(tokenizer, segmenter, batch)
      else:
        mine = [i for i in range(len(batch)) if (start + i - first) % train_shards % count == index]
        placed: list[list[tuple[list[int], Any]] | None] = [None] * len(batch)
        for i, found in zip(mine, encoded(tokenizer, segmenter, [batch[i] for i in mine])):
          placed[i] = found
        batch_sentences = placed
      for number, sentences in enumerate(batch_sentences, start):
        if first is None:
          if not sentences:
            continue
          yield from hold(sentences, (0, number))
          if head["end"] is None:
            continue
          sentences = sentences[head["end"][2]:]
          first = number if sentences else number + 1
        shard = (number - first) % train_shards
        if sentences and shard % count == index:
          yield "train", shard, sentences
      start += len(batch)
    return
  for file in range(len(source.files)):  # the head, in every process
    if head["end"] is not None:
      break
    for number, sentences in enumerate(_encoded_documents(source.file_documents(file), tokenizer, segmenter)):
      if sentences:
        yield from hold(sentences, (file, number))
        if head["end"] is not None:
          break
  end = head["end"] or (len(source.files), 0, 0)
  source.new_pass()  # skipped lines are counted where files are read for training, each file by one process
  for file in range(end[0], len(source.files)):
    shard = file % train_shards
    if shard % count != index:
      continue
    numbered: Iterator[tuple[int, list[str]]] = enumerate(source.file_documents(file))
    if file == end[0]:
      numbered = itertools.islice(numbered, end[1], None)
    for number, sentences in _encoded_numbered(numbered, tokenizer, segmenter):
      if (file, number) == end[:2]:
        sentences = sentences[end[2]:]
      if sentences:
        yield "train", shard, sentences


def _encoded_documents(documents: Iterator[list[str]], tokenizer: Tokenizer, segmenter: str):
  """Each document's sentences' (token ids, word_starts or None), tokenized ENCODE_BATCH documents at a time."""
  while batch := list(itertools.islice(documents, ENCODE_BATCH)):
    yield from encoded(tokenizer, segmenter, batch)


def _encoded_numbered(documents: Iterator[tuple[int, list[str]]], tokenizer: Tokenizer, segmenter: str):
  while batch := list(itertools.islice(documents, ENCODE_BATCH)):
    yield from zip([n for n, _ in batch], encoded(tokenizer, segmenter, [d for _, d in batch]))


def encoded(tokenizer: Tokenizer, segmenter: str, documents: list[list[str]]) -> list[list[tuple[list[int], Any]]]:
  """Per document, its sentences' (token ids, word_starts or None), without those that tokenize to nothing."""
  texts = [sentence for document in documents for sentence in document]
  if not texts:
    return [[] for _ in documents]
  name, _, lexicon = segmenter.partition(":")  # words.spec
  if name == "jieba_pos":
    flags = functools.partial(knowledge.unit_flags, lexicon=lexicon)
    encoded: Iterator[tuple[list[int], Any]] = iter(zip(*words.encode(tokenizer, texts, flags)))
  elif name == "jieba":
    encoded = iter(zip(*words.encode(tokenizer, texts)))
  else:
    encoded = ((ids, None) for ids in tokenizer.encode(texts))
  return [[sentence for sentence in (next(encoded) for _ in document) if sentence[0]] for document in documents]


class _ShardWriters:
  """TFRecord writers for the shards this process writes, {split: (shards, the indices of those it writes)}."""

  def __init__(self, directory: storage.Path, splits: dict[str, tuple[int, Iterable[int]]]):
    from bert_jax.data import records
    from bert_jax.data.tf_cpu import tf

    self.tf = tf
    self.paths = {split: {i: directory / shard_name(split, i, n) for i in mine} for split, (n, mine) in splits.items()}
    self.writers = {split: {i: records.Writer(p) for i, p in paths.items()} for split, paths in self.paths.items()}
    self.counts = {split: {i: {"documents": 0, "sentences": 0, "tokens": 0} for i in paths}
                   for split, paths in self.paths.items()}

  def write(self, split: str, shard: int, sentences: list[tuple[list[int], Any]]) -> None:
    """One document from its sentences' (token ids, word_starts or None)."""
    tf = self.tf
    token_ids, lengths = [t for ids, _ in sentences for t in ids], [len(ids) for ids, _ in sentences]
    feature = {"token_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=token_ids)),
               "sentence_lengths": tf.train.Feature(int64_list=tf.train.Int64List(value=lengths))}
    if sentences[0][1] is not None:
      feature["word_starts"] = tf.train.Feature(int64_list=tf.train.Int64List(
          value=[flag for _, starts in sentences for flag in starts]))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    self.writers[split][shard].write(example.SerializeToString(deterministic=True))  # features in name order
    counts = self.counts[split][shard]
    counts["documents"] += 1
    counts["sentences"] += len(lengths)
    counts["tokens"] += len(token_ids)

  def documents(self, split: str) -> int:
    return sum(c["documents"] for c in self.counts[split].values())

  def close(self) -> None:
    for writers in self.writers.values():
      for writer in writers.values():
        writer.close()

  def shards(self) -> dict:
    """{split: [{"index", "file", "documents", "sentences", "tokens", "bytes"}, ...]} of the closed files."""
    return {split: [{"index": i, "file": path.name, **self.counts[split][i], "bytes": storage.size(path)}
                    for i, path in paths.items()] for split, paths in self.paths.items()}
