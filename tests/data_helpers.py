"""Shared by the tests/test_data_*.py files (and others that need a small corpus): tiny configs, text sources,
corpora written to disk, prepared corpora, and reading batches."""

from pathlib import Path

import ml_collections
import numpy as np

from bert_jax import config as config_lib

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon "
         "phi chi psi omega one two three four five six seven eight nine ten").split()


def write_corpus(path, documents: int, seed: int = 0):
  """A sentence-per-line corpus of `documents` documents of 1-7 sentences of WORDS, blank lines between them."""
  rng = np.random.default_rng(seed)
  text = "\n\n".join("\n".join(" ".join(rng.choice(WORDS, rng.integers(3, 12))) + "."
                               for _ in range(rng.integers(1, 8))) for _ in range(documents))
  path.write_text(text + "\n")
  return path


def data_config(source: str, **overrides) -> ml_collections.ConfigDict:
  """The `data` section a Source reads, for one source."""
  c = ml_collections.ConfigDict({"source": source, "text_format": "sentences", "jsonl_field": "text",
                                 "tfds_data_dir": "", "tfds_split": "train"})
  c.update(overrides)
  return c


def tiny_config(name: str = "bert_tiny", *overrides: str):
  return config_lib.load_config(name, ["data.seq_len=64", "train.batch_size=32", "eval.batch_size=16",
                                       "data.shuffle_buffer=1000", *overrides])


def prepared_workdir(tmp_path_factory, config) -> Path:
  from bert_jax.data import pipeline

  workdir = tmp_path_factory.mktemp("workdir")
  pipeline.prepare_if_needed(config, workdir)
  return workdir


def take(dataset, batches: int) -> dict:
  """`batches` batches of a tf.data.Dataset, concatenated into numpy arrays."""
  rows = list(dataset.take(batches).as_numpy_iterator())
  return {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}


def originals(batch: dict) -> np.ndarray:
  """input_ids with the masked tokens put back."""
  ids = batch["input_ids"].copy()
  rows, slots = np.nonzero(batch["masked_weights"])
  ids[rows, batch["masked_positions"][rows, slots]] = batch["masked_ids"][rows, slots]
  return ids


def synthetic_documents(count: int, seed: int = 0) -> list[dict]:
  """Tokenized documents whose ids tell where each token came from: document d, position p -> 1000 * d + p."""
  rng = np.random.default_rng(seed)
  documents = []
  for d in range(1, count + 1):
    lengths = rng.integers(1, 16, rng.integers(1, 12)).astype(np.int32)
    lengths[rng.random(len(lengths)) < 0.05] = 40  # a few sentences longer than a sequence
    documents.append({"token_ids": (1000 * d + np.arange(lengths.sum())).astype(np.int32),
                      "sentence_lengths": lengths})
  return documents


def as_dataset(documents: list[dict]):
  from bert_jax.data.tf_cpu import tf

  return tf.data.Dataset.from_generator(
      lambda: iter(documents), output_signature={"token_ids": tf.TensorSpec([None], tf.int32),
                                                 "sentence_lengths": tf.TensorSpec([None], tf.int32)})
