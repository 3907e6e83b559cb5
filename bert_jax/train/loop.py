"""A whole training run in a workdir: the run lock, the config saved beside the run, resume from the newest good
checkpoint (or a fresh state saved at step 0), the Trainer stepping with its hooks (evaluation, checkpoints), and a
clean stop on SIGTERM."""

from collections.abc import Iterator, Sequence
import contextlib
import sys
from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np

from bert_jax import checkpoint
from bert_jax.errors import UserError
from bert_jax.files import workdir as workdir_lib
from bert_jax.train import evaluator as evaluator_lib
from bert_jax.train.metrics_writer import MetricsWriter
from bert_jax.train.state import TrainState
from bert_jax.train.trainer import Hook, Trainer


@contextlib.contextmanager
def run_lock(workdir: str) -> Iterator[None]:
  """W/.lock held by process 0 for the whole run; every process learns whether it was taken."""
  lock = workdir_lib.RunLock(workdir)
  refusal = None
  if jax.process_index() == 0:
    try:
      lock.acquire()
    except UserError as error:
      refusal = error
  if jax.process_count() > 1:
    refused = multihost_utils.broadcast_one_to_all(np.int32(refusal is not None))
    if refused and refusal is None:
      raise UserError(f"process 0 could not take {lock.path}; another run uses {workdir}")
  if refusal is not None:
    raise refusal
  try:
    yield
  finally:
    lock.release()


def train(config: Any, workdir: str, hooks: Sequence[Hook] = (), init: str | None = None
          ) -> tuple[TrainState, list[dict]]:
  """A whole run in `workdir` (made absolute here), resumed from the newest good checkpoint in W/checkpoints (a
  fresh run saves step 0, from the parameters of checkpoint `init` when given: Trainer.init_state); only process 0
  writes the config and the logs, and only one run may use a workdir at a time. On SIGTERM it saves the current
  step, waits for the commit and returns."""
  workdir = workdir_lib.resolve(workdir)
  trainer = Trainer(config)
  writes = jax.process_index() == 0
  with run_lock(workdir):
    checkpoints = checkpoint.Checkpoints(workdir, config)
    try:
      state, batches = checkpoints.restore_or_init(trainer, workdir, init)
      if writes:
        workdir_lib.save_config(config, workdir)
      writer = MetricsWriter(workdir, config.train.steps, int(state.step), enabled=writes)
      try:
        return _train(trainer, checkpoints, state, batches, writer, workdir, hooks)
      finally:
        writer.close()
    finally:
      _close(checkpoints)


def _close(checkpoints: checkpoint.Checkpoints) -> None:
  """Waits for a save still being written; when another error is already on its way, a failed save is reported
  as a line and the first error goes on."""
  if sys.exc_info()[0] is None:
    checkpoints.close()
    return
  try:
    checkpoints.close()
  except UserError as error:
    checkpoint.report(str(error))


def _train(trainer: Trainer, checkpoints: checkpoint.Checkpoints, state: TrainState, batches: Any,
           writer: MetricsWriter, workdir: str, hooks: Sequence[Hook]) -> tuple[TrainState, list[dict]]:
  config = trainer.config
  evaluations = None
  if config.eval.every or config.checkpoint.best_metric:
    evaluations = evaluator_lib.Evaluations(evaluator_lib.Evaluator(trainer, workdir), writer)
  saver = checkpoint.Saver(checkpoints, batches, evaluations.at if evaluations else None)
  writer.info(trainer.describe())
  try:
    if int(state.step) == 0:
      saver.save(0, state)
    all_hooks = [*hooks, Hook(config.checkpoint.every, saver.save, saver.due)]
    if config.eval.every and evaluations is not None:  # always set with eval.every
      all_hooks.insert(0, Hook(config.eval.every, evaluations.hook))
    state, records = trainer.run(state, batches, writer, all_hooks)
    checkpoints.wait()
    return state, records
  except checkpoint.Preempted as stop:
    writer.info(str(stop))
    return stop.state, []
  finally:
    saver.close()
