"""Evaluation of checkpoints: config.eval.batches fixed batches of the held-out split (the same masks every
time), the objective's summarize() metrics, W/eval/<step>.json and TensorBoard scalars eval/<metric>.

Synthetic data (data.source=synthetic) evaluates on the synthetic stream's steps from SYNTHETIC_EVAL_STEP on,
which training never reaches. An objective with `eval_extras(model, params, batch, tokenizer)` (T5's greedy
decodes) adds readable samples of the first eval batch to the JSON file.
"""

import json
from typing import Any, Iterator, Sequence

import jax
import numpy as np
from etils import epath

from bert_jax import parallel
from bert_jax.checkpoint import CHECKPOINT_DIR, Checkpoints, report, short_error
from bert_jax.errors import UserError
from bert_jax.train import batches as batches_lib
from bert_jax.train.loop import Trainer

SYNTHETIC_EVAL_STEP = 2 ** 40
EVAL_DIR = "eval"


class Evaluator:
  """Metrics of parameters on the run's fixed eval batches (made once, on the trainer's mesh)."""

  def __init__(self, trainer: Trainer, workdir: str | epath.Path):
    self.trainer = trainer
    self.workdir = epath.Path(workdir)
    self._batches: list[dict] | None = None

  @property
  def batches(self) -> list[dict]:
    if self._batches is None:
      self._batches = list(self._make_batches())
    return self._batches

  def _make_batches(self) -> Iterator[dict]:
    config, trainer = self.trainer.config, self.trainer
    size = config.eval.batch_size
    parallel.check_batch(size, trainer.mesh, trainer.rules, "eval.batch_size")
    shardings = {name: parallel.batch_sharding(trainer.mesh, trainer.rules, len(shape))
                 for name, (shape, _) in trainer.objective.feature_spec(size).items()}
    if config.data.source == "synthetic":
      synthetic = batches_lib.SyntheticBatches(trainer.objective, size, config.seed, shardings, SYNTHETIC_EVAL_STEP)
      for _ in range(config.eval.batches):
        yield next(synthetic)
      return
    from bert_jax.data import pipeline

    for batch in pipeline.eval_dataset(config, self.workdir, jax.process_index(), jax.process_count()):
      yield batches_lib.to_global({name: tensor.numpy() for name, tensor in batch.items()}, shardings, size)

  def __call__(self, params: Any) -> dict:
    totals = None
    for batch in self.batches:
      outputs = jax.device_get(self.trainer.eval_step(params, batch))
      outputs = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), outputs)
      totals = outputs if totals is None else jax.tree_util.tree_map(np.add, totals, outputs)
    return self.trainer.objective.summarize(totals["sums"], totals["metrics"], totals["counts"])

  def extras(self, params: Any) -> Any:
    """The objective's readable samples of the first eval batch, or None when it has none."""
    objective = self.trainer.objective
    if not hasattr(objective, "eval_extras"):
      return None
    tokenizer = None
    if self.trainer.config.data.source != "synthetic":
      from bert_jax.data import pipeline

      tokenizer = pipeline.load_tokenizer(self.trainer.config, self.workdir)
    with self.trainer.context():
      return objective.eval_extras(self.trainer.eval_model, params, self.batches[0], tokenizer)


def write_results(workdir: str | epath.Path, record: dict, extras: Any = None) -> epath.Path:
  """W/eval/<step>.json (written whole, then renamed) and TensorBoard scalars; only process 0 writes."""
  path = epath.Path(workdir) / EVAL_DIR / f"{record['step']}.json"
  if jax.process_index() != 0:
    return path
  from tensorboardX import SummaryWriter

  path.parent.mkdir(parents=True, exist_ok=True)
  partial = path.with_name(path.name + ".partial")
  partial.write_text(json.dumps(record if extras is None else {**record, "samples": extras}, indent=1) + "\n")
  partial.replace(path)
  with SummaryWriter(str(epath.Path(workdir) / "tensorboard")) as writer:
    for key, value in record.items():
      if key != "step":
        writer.add_scalar(f"eval/{key}", value, record["step"])
  return path


class Damaged(UserError):
  """A checkpoint whose files cannot be read."""


class CheckpointEvaluator:
  """The checkpoints of a workdir (read only) and an Evaluator on this process's devices (any mesh)."""

  def __init__(self, config: Any, workdir: str | epath.Path, devices: Sequence[Any] | None = None):
    self.workdir = epath.Path(workdir)
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
    except UserError:
      raise
    except Exception as error:  # any failure to read a step means its files are damaged
      raise Damaged(f"checkpoint {step} in {self.directory} is damaged ({short_error(error)})") from error
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
  try:
    steps = session.steps()
    if not steps:
      raise UserError(f"no checkpoints in {session.directory}; train with `bert-jax train --workdir {workdir}` first")
    for candidate in [step] if step is not None else steps if every else steps[::-1]:
      try:
        yield session.evaluate(candidate)
      except Damaged as error:
        if step is not None:
          raise
        report(f"{error}; skipped")
        continue
      if not every:
        return
    if not every:
      raise UserError(f"none of the checkpoints in {session.directory} could be read")
  finally:
    session.close()


def watch(config: Any, workdir: str | epath.Path, poll_seconds: int = 10,
          devices: Sequence[Any] | None = None) -> Iterator[dict]:
  """Evaluates each new checkpoint as it appears, until the one of step config.train.steps."""
  import orbax.checkpoint as ocp

  directory = epath.Path(workdir) / CHECKPOINT_DIR
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
