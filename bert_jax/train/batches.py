"""Batch sources for training: process-local numpy batches bridged to global, sharded jax.Arrays.

SyntheticBatches (data.source == 'synthetic') draws row r of step s from a numpy Generator seeded with
(seed, s, r): each process makes only its rows, and the global batch is the same whatever the number
of processes. PipelineBatches reads the tf.data pipeline; its `iterator` is what a checkpoint saves.

Both keep their position in a checkpoint's `data` directory: `save_position(directory)` writes it (every process
calls it), `restore_position(directory)` continues from it. A missing or unreadable file raises FileNotFoundError,
a JSON error or checkpoint.Damaged; a position written by the other kind of source, or by another number of processes,
is a
UserError.
"""

import json
from typing import Any

import jax
import numpy as np

from bert_jax import checkpoint, parallel
from bert_jax.errors import UserError

SYNTHETIC_POSITION = "synthetic.json"


def _process_prefix(index: int, count: int) -> str:
  return f"process_{index}-of-{count}"


def _saved_pipeline_positions(directory) -> list[str]:
  return sorted(p.name.removesuffix(".index") for p in directory.glob("process_*.index"))


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

  def save_position(self, directory) -> None:
    if jax.process_index() == 0:
      (directory / SYNTHETIC_POSITION).write_text(json.dumps({"step": self.step}))

  def restore_position(self, directory) -> None:
    if _saved_pipeline_positions(directory):
      raise UserError(f"{directory.parent} holds a tf.data position but data.source is synthetic; train with the "
                      "data.source it was saved with, or use a new --workdir")
    self.step = json.loads((directory / SYNTHETIC_POSITION).read_text())["step"]  # unreadable: a damaged checkpoint


class PipelineBatches:

  def __init__(self, config: Any, workdir: str, objective: Any, shardings: dict):
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
    self.dataset = pipeline.train_dataset(config, objective, workdir, jax.process_index(), process_count)
    self.iterator = iter(self.dataset)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    local = {name: tensor.numpy() for name, tensor in next(self.iterator).items()}
    return to_global(local, self.shardings, self.batch_size)

  def _checkpoint(self):
    from bert_jax.data.tf_cpu import tf

    return tf, tf.train.Checkpoint(iterator=self.iterator)

  def save_position(self, directory) -> None:
    from bert_jax.data import records

    _, position = self._checkpoint()
    records.write_position(position, directory / _process_prefix(jax.process_index(), jax.process_count()))

  def restore_position(self, directory) -> None:
    if (directory / SYNTHETIC_POSITION).exists():
      raise UserError(f"{directory.parent} was written with data.source=synthetic; train with the data.source it "
                      "was saved with, or use a new --workdir")
    saved = _saved_pipeline_positions(directory)
    counts = {name.rpartition("-of-")[2] for name in saved}
    if saved and str(jax.process_count()) not in counts:
      raise UserError(f"{directory.parent} holds the data positions of {' or '.join(sorted(counts))} processes, "
                      f"this run has {jax.process_count()}; resume with the same number of processes")
    from bert_jax.data import records

    tf, position = self._checkpoint()
    try:
      records.read_position(position, directory / _process_prefix(jax.process_index(),
                                                                   jax.process_count())).assert_consumed()
    except (tf.errors.OpError, ValueError, AssertionError) as error:
      raise checkpoint.Damaged(f"{directory}: {str(error).strip().splitlines()[0][:160]}") from error


class TaskBatches(SyntheticBatches):
  """A fine-tuning task's training examples (objective.arrays("train")): epoch e visits them in the order of a
  permutation seeded by (seed, e), and batch s holds rows s*B .. s*B+B-1 of that endless stream, so a position is a
  step, as the synthetic stream's, and each process makes only its rows."""

  def __init__(self, arrays: dict, batch_size: int, seed: int, shardings: dict, start_step: int = 0):
    super().__init__(None, batch_size, seed, shardings, start_step)
    self.arrays = arrays
    self.size = len(next(iter(arrays.values())))
    self._orders: dict[int, np.ndarray] = {}

  def _order(self, epoch: int) -> np.ndarray:
    if epoch not in self._orders:
      self._orders = {epoch: np.random.default_rng((self.seed, epoch)).permutation(self.size)}
    return self._orders[epoch]

  def __next__(self) -> dict:
    positions = [self.step * self.batch_size + int(r) for r in self.rows]
    index = np.array([self._order(p // self.size)[p % self.size] for p in positions])
    self.step += 1
    return to_global({name: x[index] for name, x in self.arrays.items()}, self.shardings, self.batch_size)


def task_tokenizer(config: Any):
  """A fine-tuning run's tokenizer (config.data.tokenizer, the one its model was pretrained with), checked against
  the model."""
  from bert_jax.data import tokenizer as tokenizer_lib

  if not config.data.tokenizer:
    raise UserError("a fine-tuning run needs data.tokenizer, the tokenizer its model was pretrained with")
  tokenizer = tokenizer_lib.load(config.data.tokenizer, config.data.extra_ids)
  tokenizer_lib.check_model_fit(tokenizer, config.model)
  return tokenizer


def make_batches(config: Any, workdir: str, objective: Any, shardings: dict, start_step: int = 0):
  if hasattr(objective, "task"):
    return TaskBatches(objective.arrays("train", task_tokenizer(config)), config.train.batch_size, config.seed,
                       shardings, start_step)
  if config.data.source == "synthetic":
    return SyntheticBatches(objective, config.train.batch_size, config.seed, shardings, start_step)
  return PipelineBatches(config, workdir, objective, shardings)
