"""Batch sources for training: process-local numpy batches bridged to global, sharded jax.Arrays.

SyntheticBatches (data.source == 'synthetic') draws row r of step s from a numpy Generator seeded with
(seed, s, r): each process makes only its rows, and the global batch is the same whatever the number
of processes. PipelineBatches reads the tf.data pipeline; its `iterator` is what a checkpoint saves.
"""

from typing import Any

import jax
import numpy as np

from bert_jax import parallel
from bert_jax.errors import UserError


def to_global(local: dict, shardings: dict, global_batch: int) -> dict:
  return {name: jax.make_array_from_process_local_data(shardings[name], np.asarray(x),
                                                        (global_batch,) + tuple(x.shape[1:]))
          for name, x in local.items()}


class SyntheticBatches:

  def __init__(self, objective: Any, batch_size: int, seed: int, shardings: dict, start_step: int = 0):
    self.objective = objective
    self.batch_size = batch_size
    self.seed = seed
    self.shardings = shardings
    self.step = start_step  # the step whose batch comes next; a checkpoint stores it
    self.rows = parallel.local_rows(next(iter(shardings.values())), batch_size)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    rows = [self.objective.synthetic_batch(1, np.random.default_rng((self.seed, self.step, int(r))))
            for r in self.rows]
    local = {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}
    self.step += 1
    return to_global(local, self.shardings, self.batch_size)


class PipelineBatches:

  def __init__(self, config: Any, workdir: str, shardings: dict):
    from bert_jax.data import pipeline  # TensorFlow loads only for real data

    self.batch_size = config.train.batch_size
    self.shardings = shardings
    process_count = jax.process_count()
    held = len(parallel.local_rows(next(iter(shardings.values())), self.batch_size))
    if held * process_count != self.batch_size:
      raise UserError(f"each process must hold an equal share of the batch, but this one holds {held} of "
                      f"{self.batch_size} rows over {process_count} processes; let the batch mesh axes span "
                      "all processes (config.mesh / config.rules)")
    pipeline.prepare_if_needed(config, workdir)
    self.dataset = pipeline.train_dataset(config, workdir, jax.process_index(), process_count)
    self.iterator = iter(self.dataset)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    local = {name: tensor.numpy() for name, tensor in next(self.iterator).items()}
    return to_global(local, self.shardings, self.batch_size)


def make_batches(config: Any, workdir: str, objective: Any, shardings: dict, start_step: int = 0):
  if config.data.source == "synthetic":
    return SyntheticBatches(objective, config.train.batch_size, config.seed, shardings, start_step)
  return PipelineBatches(config, workdir, shardings)
