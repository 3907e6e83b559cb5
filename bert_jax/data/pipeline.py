"""What training and evaluation call: prepare the data once, then stream batches of an objective's features.

  prepare_if_needed(config, workdir)   tokenizer (data.tokenizer, or one trained into <workdir>/tokenizer) and
                                       prepared TFRecords (data.prepared_dir, or <workdir>/data); each process
                                       writes its share, process 0 the completion marker
  train_dataset(config, objective, workdir, i, n)  infinite, process-local batches of train.batch_size // n
  eval_dataset(config, objective, workdir, i, n)   eval.batches batches of eval.batch_size // n from the held-out split,
                                       identical on every call
  documents(config, workdir, split, ...) one process's tokenized documents (what objective.dataset consumes)
  load_tokenizer(config, workdir)      the tokenizer the prepared data was made with

A training stream: this process's files (files[i::n]; every n-th document when there are fewer files than
processes) -> interleaved reads -> documents shuffled (data.shuffle_buffer) anew each epoch, epochs repeated
forever -> the objective's transform (new masks each epoch) -> examples shuffled over 16 batches -> batches
-> prefetch (an objective that carries memory between batches lays its batches out itself, unshuffled, so that
each row continues one stretch of text: objectives/permutation_lm.py). Everything is a seeded tf.data op, so the same
config gives the same batches, and the
iterator's position can be saved and restored exactly with tf.train.Checkpoint(iterator=iterator).
With data.stream, nothing is prepared but the tokenizer: the same documents are tokenized inside the pipeline
(bert_jax/data/stream.py), and shuffled, transformed and batched as above.
"""

import json
import sys
from typing import Any

import jax
import numpy as np

from bert_jax.data import prepare as prepare_lib, records, stream as stream_lib, tokenizer as tokenizer_lib, words
from bert_jax.data.sources import Source
from bert_jax.data.tf_cpu import tf
from bert_jax.errors import UserError
from bert_jax.files import atomic, storage

TOKENIZER_MODEL = "spm.model"
TOKENIZER_SETTINGS = "tokenizer.json"
EXAMPLE_SHUFFLE_BATCHES = 16  # the sequences of one document spread over this many batches


def prepared_dir(config: Any, workdir: str | storage.Path) -> storage.Path:
  return storage.path(config.data.prepared_dir) if config.data.prepared_dir else storage.path(workdir) / "data"


def tokenizer_settings(config: Any, source: Source) -> dict:
  return {"source": source.fingerprint(), "vocab_size": config.model.vocab_size,
          "type": config.data.tokenizer_type, "character_coverage": config.data.character_coverage,
          "pad_id": config.model.get("pad_token_id", 0), "extra_ids": config.data.extra_ids,
          "sentences": config.data.tokenizer_sentences, **tokenizer_lib.options(config.data)}


def _tokenizer_for(config: Any, workdir: str | storage.Path, source: Source) -> tokenizer_lib.Tokenizer:
  """data.tokenizer when given; otherwise <workdir>/tokenizer/spm.model, trained on the source the first time."""
  if config.data.tokenizer:
    tokenizer = tokenizer_lib.load(config.data.tokenizer, config.data.extra_ids)
  else:
    tokenizer = _workdir_tokenizer(config, storage.path(workdir) / "tokenizer", source)
  tokenizer_lib.check_model_fit(tokenizer, config.model)
  return tokenizer


def _workdir_tokenizer(config: Any, directory: storage.Path, source: Source) -> tokenizer_lib.Tokenizer:
  """The tokenizer directory (spm.model and the settings it was trained with) is published whole, once."""
  wanted = tokenizer_settings(config, source)
  found = _trained_settings(directory)
  if found is None:
    print(f"training a {config.data.tokenizer_type} tokenizer of {config.model.vocab_size} ids on {source.spec}",
          file=sys.stderr)
    model = tokenizer_lib.train_serialized_for_config(config, source)
    with atomic.private_directory(directory) as private:
      (private / TOKENIZER_MODEL).write_bytes(model)
      (private / TOKENIZER_SETTINGS).write_text(json.dumps(wanted, indent=1))
      atomic.publish(private, directory)  # or another run published first: its settings are checked below
    found = _trained_settings(directory)
    assert found is not None, directory  # published whole, settings included
  if found != wanted:
    changed = sorted(k for k in wanted if found.get(k) != wanted[k])
    raise UserError(f"{directory} holds a tokenizer trained with other settings ({', '.join(changed)} differ); "
                    "use a new --workdir or delete that directory")
  tokenizer = tokenizer_lib.load(directory / TOKENIZER_MODEL, config.data.extra_ids)
  if tokenizer.vocab_size != wanted["vocab_size"]:
    raise UserError(f"{tokenizer.path} has {tokenizer.vocab_size} ids but was trained with {wanted['vocab_size']}, "
                    f"so the file is damaged; delete {directory} to train the tokenizer again")
  return tokenizer


def _trained_settings(directory: storage.Path) -> dict | None:
  """The settings a published tokenizer directory was trained with; None when there is none."""
  path = directory / TOKENIZER_SETTINGS
  if path.is_file():
    try:
      return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
      raise UserError(f"{path} is damaged (not JSON); delete {directory} to train the tokenizer again") from None
  if directory.is_dir() and any(directory.iterdir()):
    raise UserError(f"{directory} holds files but no {TOKENIZER_SETTINGS}, so it is not a tokenizer trained here; "
                    "move them away or use a new --workdir")
  return None


def prepare_if_needed(config: Any, workdir: str | storage.Path, process_index: int | None = None,
                      process_count: int | None = None, wait: bool = True) -> dict | None:
  """Tokenizer and prepared data for config.data; a no-op when they are complete. Returns the metadata (None for a
  process other than 0 that does not `wait` for it). Process 0 trains the tokenizer while the others wait for it;
  then each process prepares its share (bert_jax/data/prepare.py). The processes default to JAX's."""
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  prepare_lib.check_process(index, count)
  source = Source(config.data)
  words.check(config.data.get("word_segmenter", "pieces"))
  if index != 0 and not config.data.tokenizer:
    directory = storage.path(workdir) / "tokenizer"
    prepare_lib.wait_for(lambda: (directory / TOKENIZER_SETTINGS).is_file() or None,  # written last
                         f"process {index}: waiting for process 0 to train the tokenizer in {directory}")
  tokenizer = _tokenizer_for(config, workdir, source)
  if config.data.get("stream"):
    return None  # tokenized while training: bert_jax/data/stream.py
  return prepare_lib.prepare(config, source, tokenizer, prepared_dir(config, workdir), index, count, wait)


def _metadata(config: Any, workdir: str | storage.Path) -> dict:
  """The metadata of complete prepared data."""
  directory = prepared_dir(config, workdir)
  metadata = prepare_lib.read_metadata(directory)
  if metadata is None:
    raise UserError(f"no prepared data in {directory}; run `bert-jax prepare --config ... --workdir ...` first")
  prepare_lib.check_complete(directory, metadata)
  return metadata


def load_tokenizer(config: Any, workdir: str | storage.Path) -> tokenizer_lib.Tokenizer:
  """The tokenizer the prepared data was made with (the very file: its sha256 is checked), checked against the
  model (vocab size, pad id). With data.stream, the tokenizer the stream is tokenized with."""
  if config.data.get("stream"):
    return _tokenizer_for(config, workdir, Source(config.data))
  directory = prepared_dir(config, workdir)
  metadata = _metadata(config, workdir)
  path = storage.path(metadata["tokenizer"])
  if not path.is_file():
    raise UserError(f"tokenizer {path}, which the data in {directory} was prepared with, is missing; restore it, "
                    f"or delete {directory} to prepare the data again")
  tokenizer = tokenizer_lib.load(path, config.data.extra_ids)
  if tokenizer.sha256() != metadata["settings"]["tokenizer_sha256"]:
    raise prepare_lib.tokenizer_changed(directory, metadata["tokenizer"], path)
  tokenizer_lib.check_model_fit(tokenizer, config.model)
  return tokenizer


def _seed(config: Any, *purpose: int) -> int:
  """A seed for one use (and one process), derived from config.seed."""
  return int(np.random.SeedSequence([config.seed, *purpose]).generate_state(1)[0] >> 1)


def _local_batch(global_batch: int, process_count: int, key: str) -> int:
  if global_batch % process_count:
    raise UserError(f"{key}={global_batch} is not divisible by the {process_count} processes")
  return global_batch // process_count


def _shards(config: Any, workdir: str | storage.Path, split: str, process_index: int, process_count: int):
  """(this process's shards, whether whole files are shared out; otherwise every process reads them all and
  keeps every process_count-th document)."""
  shards = [s for s in _metadata(config, workdir)["splits"][split] if s["documents"]]
  by_file = len(shards) >= process_count
  return (shards[process_index::process_count] if by_file else shards), by_file


def _check_fills_a_batch(config: Any, workdir: str | storage.Path, split: str, process_index: int, process_count: int,
                         local_batch: int, objective: Any) -> None:
  """An upper bound of the sequences one pass gives (each takes at least one sentence or seq_len - 3 tokens;
  a memory stream's rows take seq_len - 3 tokens each, a reversed row none more) must reach a batch."""
  mine, by_file = _shards(config, workdir, split, process_index, process_count)
  share = 1 if by_file else process_count
  tokens = sum(s["tokens"] for s in mine) // (config.data.seq_len - 3)
  if _carries_memory(objective):
    most, needed = tokens // share, objective.stream_tokens(local_batch, 1) // (config.data.seq_len - 3)
  else:
    most, needed = (sum(s["sentences"] for s in mine) + tokens) // share, local_batch
  if most < needed:
    raise UserError(f"the {split} split is too small: process {process_index} of {process_count} gets at most "
                    f"{most} sequences of data.seq_len={config.data.seq_len}, fewer than one batch of {local_batch}"
                    + (f" needs ({needed})" if needed != local_batch else "")
                    + "; add text, or lower the batch size or data.eval_tokens")


def _carries_memory(objective: Any) -> bool:
  """Whether the objective's batches must come in its stream layout (see objectives/permutation_lm.py)."""
  return getattr(objective, "carries_memory", False)


def documents(config: Any, workdir: str | storage.Path, split: str, process_index: int = 0, process_count: int = 1,
              shuffle: bool = False):
  """This process's documents of a split: {"token_ids": int32 [T], "sentence_lengths": int32 [S]}, and
  "word_starts": int32 [T] when the data was prepared with data.word_segmenter=jieba. With `shuffle`, shuffled
  anew each epoch and repeated forever; otherwise one pass in file order."""
  mine, by_file = _shards(config, workdir, split, process_index, process_count)
  if not mine:
    raise UserError(f"the prepared data has no {split} documents"
                    + ("; set data.eval_tokens > 0 and prepare it again" if split == "eval" else ""))
  directory = prepared_dir(config, workdir)
  names = tf.data.Dataset.from_tensor_slices([str(directory / s["file"]) for s in mine])
  if shuffle:  # the same order in every process, so that sharding by document below stays disjoint
    names = names.shuffle(len(mine), seed=_seed(config, 1), reshuffle_each_iteration=True)
  found = records.interleaved(names, directory, min(len(mine), 8))
  if not by_file:
    found = found.shard(process_count, process_index)
  segmenter = _metadata(config, workdir)["settings"].get("word_segmenter", "pieces")
  found = found.map(_document_parser(segmenter != "pieces"), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
  if shuffle:
    found = found.shuffle(config.data.shuffle_buffer, seed=_seed(config, 2, process_index),
                          reshuffle_each_iteration=True).repeat()
  return found


def _document_parser(word_starts: bool):
  """A prepared document's features (see bert_jax/data/prepare.py), word_starts among them when stored."""
  names = ("token_ids", "sentence_lengths") + (("word_starts",) if word_starts else ())

  @tf.autograph.experimental.do_not_convert
  def parse(record):
    parsed = tf.io.parse_single_example(record, {name: tf.io.RaggedFeature(tf.int64) for name in names})
    return {name: tf.cast(values, tf.int32) for name, values in parsed.items()}

  return parse


def _with_options(dataset):
  options = tf.data.Options()
  options.deterministic = True
  return dataset.with_options(options)


def train_dataset(config: Any, objective: Any, workdir: str | storage.Path, process_index: int = 0,
                  process_count: int = 1):
  """Infinite process-local batches of the objective's features (objective.feature_spec(local batch)); in the
  objective's stream layout when it carries memory from batch to batch."""
  tokenizer = load_tokenizer(config, workdir)
  batch = _local_batch(config.train.batch_size, process_count, "train.batch_size")
  if config.data.get("stream"):
    found = stream_lib.train_documents(config, Source(config.data), tokenizer, process_index, process_count,
                                       _seed(config, 1))
    stream = found.shuffle(config.data.shuffle_buffer, seed=_seed(config, 2, process_index))
  else:
    _check_fills_a_batch(config, workdir, "train", process_index, process_count, batch, objective)
    stream = documents(config, workdir, "train", process_index, process_count, shuffle=True)
  seed = _seed(config, 3, process_index)
  if _carries_memory(objective):
    batches = objective.stream_batches(stream, tokenizer, seed, True, batch, config.objective.stream_steps)
  else:
    examples = objective.dataset(stream, tokenizer, seed, True)
    examples = examples.shuffle(EXAMPLE_SHUFFLE_BATCHES * batch, seed=_seed(config, 4, process_index))
    batches = examples.batch(batch, drop_remainder=True)
  return _with_options(batches.prefetch(tf.data.AUTOTUNE))


def eval_dataset(config: Any, objective: Any, workdir: str | storage.Path, process_index: int = 0,
                 process_count: int = 1):
  """config.eval.batches batches of the objective's features from the held-out documents with fixed masks: the
  same numbers on every call. A held-out split smaller than that many batches is cycled. With memory, each row
  continues one stretch of held-out text through all the batches (as far as objective.stream_steps allows)."""
  tokenizer = load_tokenizer(config, workdir)
  batch = _local_batch(config.eval.batch_size, process_count, "eval.batch_size")
  if config.data.get("stream"):
    stream = stream_lib.eval_documents(config, Source(config.data), tokenizer, process_index, process_count)
  else:
    stream = documents(config, workdir, "eval", process_index, process_count)
    _check_fills_a_batch(config, workdir, "eval", process_index, process_count, batch, objective)
  seed = _seed(config, 5, process_index)
  if _carries_memory(objective):
    steps = min(config.objective.stream_steps, config.eval.batches)
    batches = objective.stream_batches(stream.repeat(), tokenizer, seed, False, batch, steps)
  else:
    batches = objective.dataset(stream, tokenizer, seed, False).repeat().batch(batch, drop_remainder=True)
  return _with_options(batches.take(config.eval.batches).prefetch(tf.data.AUTOTUNE))
