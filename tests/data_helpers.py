"""Shared by the tests/test_data_*.py files: tiny configs, prepared corpora, and reading batches."""

from pathlib import Path

import numpy as np

from bert_jax import config as config_lib


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
