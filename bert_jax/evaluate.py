"""Evaluation of a run's checkpoints, read only, on this process's devices (any mesh): one checkpoint, every
checkpoint, or each new one as training writes it (see bert_jax/train/evaluator.py for what is measured).
A checkpoint with a missing, truncated or corrupt file is reported and skipped (an error when asked for by step);
any other failure is an error, and evaluating nothing is an error.
"""

from collections.abc import Iterator, Sequence
from typing import Any

from etils import epath

from bert_jax.checkpoint import CHECKPOINT_DIR, Checkpoints, Damaged, report
from bert_jax.errors import UserError
from bert_jax.files import workdir as workdir_lib
from bert_jax.train.evaluator import Evaluator, write_results
from bert_jax.train.trainer import Trainer


class CheckpointEvaluator:
  """The checkpoints of a workdir (read only) and an Evaluator on this process's devices (any mesh)."""

  def __init__(self, config: Any, workdir: str | epath.Path, devices: Sequence[Any] | None = None):
    self.workdir = epath.Path(workdir_lib.resolve(str(workdir)))
    if not self.workdir.is_dir():
      raise UserError(f"workdir {self.workdir} does not exist; pass the --workdir of a training run")
    self.directory = self.workdir / CHECKPOINT_DIR
    if not self.directory.is_dir():
      raise UserError(f"{self.workdir} has no {CHECKPOINT_DIR} directory; train with "
                      f"`bert-jax train --workdir {self.workdir}` first")
    self.checkpoints = Checkpoints(self.workdir, config, read_only=True)
    self.evaluator = Evaluator(Trainer(config, devices), self.workdir)

  def steps(self) -> list[int]:
    self.checkpoints.manager.reload()
    return self.checkpoints.steps()

  def evaluate(self, step: int) -> dict:
    """The record {"step", **metrics} of one checkpoint, also written to W/eval/<step>.json and TensorBoard; a
    checkpoint whose files cannot be read raises Damaged."""
    try:
      params = self.checkpoints.restore_params(step, self.evaluator.trainer)
    except Damaged as error:
      raise Damaged(f"checkpoint {step} in {self.directory} is damaged ({error})") from error
    record = {"step": step, **self.evaluator(params)}
    write_results(self.workdir, record, self.evaluator.extras(params))
    return record

  def close(self) -> None:
    self.checkpoints.close()


def evaluate(config: Any, workdir: str | epath.Path, step: int | None = None, every: bool = False,
             devices: Sequence[Any] | None = None) -> Iterator[dict]:
  """Records of one checkpoint (`step`, or the newest that restores) or, with `every`, of all of them in order.
  A damaged checkpoint asked for by step is an error; otherwise it is reported and skipped."""
  session = CheckpointEvaluator(config, workdir, devices)
  evaluated = False
  try:
    steps = session.steps()
    if not steps:
      raise UserError(f"no checkpoints in {session.directory}; train with `bert-jax train --workdir {workdir}` first")
    for candidate in [step] if step is not None else steps if every else steps[::-1]:
      try:
        yield session.evaluate(candidate)
      except Damaged as error:
        if step is not None:
          raise UserError(str(error)) from None
        report(f"{error}; skipped")
        continue
      evaluated = True
      if not every:
        return
    if not evaluated:
      raise UserError(f"none of the checkpoints in {session.directory} could be read; see the lines above")
  finally:
    session.close()


def watch(config: Any, workdir: str | epath.Path, poll_seconds: int = 10,
          devices: Sequence[Any] | None = None) -> Iterator[dict]:
  """Evaluates each new checkpoint as it appears, until the one of step config.train.steps."""
  import orbax.checkpoint as ocp

  directory = epath.Path(workdir_lib.resolve(str(workdir))) / CHECKPOINT_DIR
  report(f"waiting for checkpoints in {directory}")
  session = None
  try:
    for step in ocp.checkpoint_utils.checkpoints_iterator(directory, seconds_to_sleep=poll_seconds):
      session = session or CheckpointEvaluator(config, workdir, devices)
      session.steps()
      try:
        yield session.evaluate(step)
      except Damaged as error:
        report(f"{error}; skipped")
      if step >= config.train.steps:
        return
  finally:
    if session is not None:
      session.close()
