"""A trained model on text a user writes (`bert-jax predict`): the objective's predict hook on a run's checkpoint or
on what `bert-jax convert` wrote, with the model's tokenizer.

    predictor = from_run(workdir, step=None)         # W/config.json, the newest checkpoint that restores, and the
                                                     # tokenizer the run's data was prepared with
    predictor = from_converted(directory, tokenizer)  # OUT/config.py and OUT/params; the tokenizer given, or the
                                                     # config's data.tokenizer
    records = predictor(texts, top_k)                # one record per text (objectives/blanks.py)

What is predicted is the objective's: fill-mask for masked_lm and permutation_lm, span infilling for
span_corruption, the rewritten text for text_infilling, the label of a fine-tuned classifier (objectives/__init__.py,
`predict`). Parameters are restored read only onto this process's devices (the config's mesh, as `bert-jax
evaluate` does); the texts of one call form one batch, replicated over the mesh.
"""

from collections.abc import Sequence
import contextlib
import importlib
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from bert_jax import config as config_lib
from bert_jax.checkpoint import Damaged, report
from bert_jax.errors import UserError
from bert_jax.evaluate import CheckpointEvaluator
from bert_jax.files import storage, workdir as workdir_lib
from bert_jax.objectives import OBJECTIVES, predicts
from bert_jax.train import batches as batches_lib
from bert_jax.train.trainer import Trainer

RUN_CONFIG = "config.json"  # what `bert-jax train` writes in its workdir (files/workdir.py save_config)


class Predictor:
  """A model, its parameters on the trainer's mesh, its tokenizer, and the objective that knows how to predict."""

  def __init__(self, trainer: Trainer, params: Any, tokenizer: Any, origin: str):
    self.trainer, self.params, self.tokenizer, self.origin = trainer, params, tokenizer, origin
    self.config = trainer.config
    objective = trainer.objective
    if not predicts(objective):
      raise UserError(f"objective {self.config.objective.name} has no predict support; bert-jax predict runs "
                      f"models trained with {', '.join(predicting_objectives())}")
    self.objective = objective

  @contextlib.contextmanager
  def context(self):
    """The trainer's mesh with the batch axis replicated: a few texts need not divide over the data axes."""
    with jax.set_mesh(self.trainer.mesh), nn.logical_axis_rules((("batch", None),) + tuple(self.trainer.rules)):
      yield

  def __call__(self, texts: Sequence[str], top_k: int = 5) -> list[dict]:
    if not texts:
      raise UserError("no text to predict on; give --text TEXT or --file F with one input per line")
    if top_k < 1:
      raise UserError(f"--top-k must be at least 1, got {top_k}")
    with self.context():
      return self.objective.predict(self.trainer.eval_model, self.params, self.tokenizer, list(texts), top_k)


def predicting_objectives() -> list[str]:
  """The registered objectives that define `predict`."""
  found = []
  for name, spec in OBJECTIVES.items():
    module_name, class_name = spec.split(":")
    if callable(getattr(getattr(importlib.import_module(module_name), class_name), "predict", None)):
      found.append(name)
  return found


def run_config(workdir: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The config a run trained with (W/config.json), with `overrides` applied."""
  path = storage.path(workdir) / RUN_CONFIG
  if not path.is_file():
    raise UserError(f"{path} not found; --workdir must be the directory of a `bert-jax train` run (or pass the "
                    "run's --config)")
  return config_lib.load_config(str(path), overrides)


def from_run(workdir: str, step: int | None = None, config: Any = None, overrides: Sequence[str] = (),
             devices: Sequence[Any] | None = None) -> Predictor:
  """The checkpoint of `step` (default: the newest that restores) of a run; `config` defaults to W/config.json."""
  from bert_jax.data import pipeline

  workdir = workdir_lib.resolve(workdir)
  config = run_config(workdir, overrides) if config is None else config
  session = CheckpointEvaluator(config, workdir, devices)
  try:
    steps = session.steps()
    if not steps:
      raise UserError(f"no checkpoints in {session.directory}; train with `bert-jax train --workdir {workdir}` first")
    for candidate in [step] if step is not None else steps[::-1]:
      try:
        params = session.checkpoints.restore_params(candidate, session.evaluator.trainer)
      except Damaged as error:
        if step is not None:
          raise UserError(f"checkpoint {step} in {session.directory} is damaged ({error})") from None
        report(f"checkpoint {candidate} in {session.directory} is damaged ({error}); skipped")
        continue
      tokenizer = (batches_lib.task_tokenizer(config) if hasattr(session.evaluator.trainer.objective, "task")
                   else pipeline.load_tokenizer(config, workdir))
      return Predictor(session.evaluator.trainer, params, tokenizer, f"{session.directory / str(candidate)}")
    raise UserError(f"none of the checkpoints in {session.directory} could be read; see the lines above")
  finally:
    session.close()


def from_converted(directory: str | storage.Path, tokenizer_path: str = "", overrides: Sequence[str] = (),
                   devices: Sequence[Any] | None = None) -> Predictor:
  """What `bert-jax convert --from-hf` wrote (OUT/config.py, OUT/params): its parameters, and the tokenizer at
  `tokenizer_path` or the config's data.tokenizer."""
  from bert_jax import convert
  from bert_jax.convert import weights
  from bert_jax.data import tokenizer as tokenizer_lib

  directory = storage.path(directory)
  if not (directory / "config.py").is_file():
    raise UserError(f"{directory / 'config.py'} not found; --model must be a directory `bert-jax convert --from-hf` "
                    "wrote (config.py and params)")
  config = config_lib.load_config(str(directory / "config.py"), overrides)
  path = workdir_lib.resolve(tokenizer_path or config.data.tokenizer)
  if not path:
    raise UserError(f"no tokenizer for the model in {directory}: pass --tokenizer with its SentencePiece .model "
                    "(or set data.tokenizer in its config.py)")
  tokenizer = tokenizer_lib.load(path, config.data.extra_ids)
  tokenizer_lib.check_model_fit(tokenizer, config.model)
  params = weights.restore_params(directory / "params")
  convert.check_params(config.model, params)
  trainer = Trainer(config, devices)
  params = jax.device_put(params, trainer.param_shardings)
  return Predictor(trainer, params, tokenizer, str(directory))
