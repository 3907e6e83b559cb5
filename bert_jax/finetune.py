"""Fine-tuning (`bert-jax finetune`): a pretrained model with a new task head, trained on a task's training split,
evaluated on its dev split(s) every epoch (W/eval/<step>.json, metrics.jsonl, TensorBoard), the best epoch's
checkpoint kept, and that checkpoint's predictions on the task's test split(s) written where the task has them
(W/predictions/, the GLUE submission's file names and format).

    pretrained = finetune.pretrained(source, step)      # a run's workdir (its newest checkpoint, or `step`), one
                                                         # checkpoint WORKDIR/checkpoints/STEP, or a directory
                                                         # `convert --from-hf` wrote
    config = finetune.make_config(pretrained, task, overrides)   # recipes.finetune_config, steps from the task
    record = finetune.run(config, workdir, pretrained.params)    # trains (or resumes); the best dev record

A run resumes like pretraining; `init=None` fine-tunes from random parameters (the baseline a pretrained model must
beat).
"""

from collections.abc import Sequence
import dataclasses
import json
import math
from typing import Any

import jax
import ml_collections

from bert_jax import config as config_lib, recipes
from bert_jax.checkpoint import CHECKPOINT_DIR, Checkpoints
from bert_jax.convert import weights
from bert_jax.data import tasks as tasks_lib
from bert_jax.errors import UserError
from bert_jax.files import storage, workdir as workdir_lib
from bert_jax.train import loop
from bert_jax.train.evaluator import EVAL_DIR

RUN_CONFIG = "config.json"
PREDICTIONS_DIR = "predictions"


@dataclasses.dataclass(frozen=True)
class Pretrained:
  config: ml_collections.ConfigDict
  params: str  # an Orbax parameter checkpoint (train --init's forms)
  tokenizer: str


def pretrained(source: str, step: int | None = None) -> Pretrained:
  path = storage.path(source)
  if weights.is_converted(path):
    if step is not None:
      raise UserError("--step goes with a run's workdir; a converted model has one set of parameters")
    config = config_lib.load_config(str(path / "config.py"))
    if not config.data.tokenizer:
      raise UserError(f"{path} has no tokenizer (data.tokenizer in its config.py); convert a checkpoint that "
                      "ships one")
    return Pretrained(config, str(path / "params"), workdir_lib.resolve(config.data.tokenizer))
  if path.parent.name == CHECKPOINT_DIR and path.name.isdigit():  # WORKDIR/checkpoints/STEP
    if step is not None:
      raise UserError(f"--init {path} names its step already; leave out --step")
    path, step = path.parent.parent, int(path.name)
  if not (path / RUN_CONFIG).is_file():
    raise UserError(f"--init {source}: expected a training run's workdir (with {RUN_CONFIG} and {CHECKPOINT_DIR}/), "
                    "one of its checkpoints, or a directory `bert-jax convert --from-hf` wrote")
  config = config_lib.load_config(str(path / RUN_CONFIG))
  checkpoints = Checkpoints(path, config, read_only=True)
  try:
    steps = checkpoints.steps()
  finally:
    checkpoints.close()
  if not steps or (step is not None and step not in steps):
    raise UserError(f"{path / CHECKPOINT_DIR} has no checkpoint {'of step ' + str(step) if step else ''}; it has: "
                    f"{', '.join(map(str, steps)) or 'none'}")
  from bert_jax.data import pipeline

  tokenizer = config.data.tokenizer or pipeline.load_tokenizer(config, path).path
  return Pretrained(config, str(path / CHECKPOINT_DIR / str(step if step is not None else steps[-1])),
                    workdir_lib.resolve(tokenizer))


def make_config(model: Pretrained, task: dict, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The fine-tuning config: the recipe on the pretrained model's config, `overrides` applied, then the steps,
  warm-up and evaluation interval derived from the task's training split where the recipe leaves them open."""
  config = _recipe(model, task, overrides)
  found = tasks_lib.load(config.task)
  if found.kind != "span":
    config.model.num_labels = 1 if found.kind == "regression" else len(found.labels)
  examples = len(found.read("train"))
  if not examples:
    raise UserError(f"task {found.name} has no training examples")
  per_epoch = math.ceil(examples / config.train.batch_size)
  if config.train.steps == 0:
    config.train.steps = max(1, math.ceil(config.task.epochs * examples / config.train.batch_size))
  if config.optimizer.warmup_steps < 0:
    config.optimizer.warmup_steps = round(config.task.warmup_proportion * config.train.steps)
  every = min(per_epoch, config.train.steps)
  if config.eval.every == 0 and found.eval_splits:
    config.eval.every = every
  if config.checkpoint.every == 0:
    config.checkpoint.every = every
  if not config.checkpoint.best_metric and found.eval_splits:
    config.checkpoint.best_metric = found.metrics[0]
  config_lib.validate(config)
  return config


def task_config(model: Pretrained, task: dict, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """config.task of the fine-tuning config make_config would make (the task's keys, `overrides` applied)."""
  return _recipe(model, task, overrides).task


def _recipe(model: Pretrained, task: dict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
  config = recipes.finetune_config(model.config, **task)
  config.data.tokenizer = model.tokenizer
  config_lib.apply_overrides(config, overrides)
  return config


def run(config: ml_collections.ConfigDict, workdir: str, init: str | None) -> dict:
  """Fine-tunes in `workdir` (resuming when it holds checkpoints), then writes the best checkpoint's test
  predictions; returns the best dev record ({"step", metrics...}; the last step's when the task has no dev split)."""
  workdir = workdir_lib.resolve(workdir)
  loop.train(config, workdir, init=init)
  record = best_record(config, workdir)
  write_test_predictions(config, workdir, record["step"])
  return record


def best_record(config: Any, workdir: str) -> dict:
  """The eval record (W/eval/<step>.json) of the best kept checkpoint by checkpoint.best_metric, the later on a tie
  (step 0, the untrained head, wins only if training made the metric worse)."""
  from bert_jax.checkpoint import higher_is_better

  checkpoints = Checkpoints(workdir, config, read_only=True)
  try:
    kept = checkpoints.steps()
  finally:
    checkpoints.close()
  directory = storage.path(workdir) / EVAL_DIR
  records = [json.loads((directory / f"{step}.json").read_text()) for step in kept
             if (directory / f"{step}.json").exists()]
  metric = config.checkpoint.best_metric
  if not records or not metric:
    return {"step": kept[-1]}
  sign = 1 if higher_is_better(metric) else -1
  return max(records, key=lambda r: (sign * r[metric], r["step"]))


def write_test_predictions(config: Any, workdir: str, step: int) -> list[storage.Path]:
  """W/predictions/<file>.tsv for each test split: `index<TAB>prediction` rows, as the GLUE server takes them."""
  from bert_jax.evaluate import CheckpointEvaluator

  objective_task = tasks_lib.load(config.task)
  if not objective_task.test_splits:
    return []
  session = CheckpointEvaluator(config, workdir)
  written = []
  try:
    params = session.checkpoints.restore_params(step, session.evaluator.trainer)
    objective = session.evaluator.trainer.objective
    for split in objective.task.test_splits:
      labels = objective.predicted_labels(split, session.evaluator.task_outputs(params, split),
                                          session.evaluator.tokenizer)
      examples = objective.task.read(split)
      name = objective.task.submission.get(split, split)
      path = storage.path(workdir) / PREDICTIONS_DIR / f"{name}.tsv"
      if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [f"{e.guid}\t{label:.3f}" if isinstance(label, float) else f"{e.guid}\t{label}"
                for e, label in zip(examples, labels)]
        path.write_text("index\tprediction\n" + "\n".join(rows) + "\n")
      written.append(path)
  finally:
    session.close()
  return written
