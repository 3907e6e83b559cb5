"""Where a frozen model's parameters and config are (distillation's teacher): a run's workdir (its config.json and its
newest checkpoint), a step of a run (W/checkpoints/STEP, or its params), or what `convert --from-hf` wrote (OUT,
holding config.py and params)."""

import dataclasses
from typing import Any

from bert_jax import config as config_lib, models
from bert_jax.convert import weights
from bert_jax.errors import UserError
from bert_jax.files import storage, workdir as workdir_lib

CHECKPOINTS = "checkpoints"


@dataclasses.dataclass(frozen=True)
class Source:
  model_config: Any  # config.model of the frozen model
  params_path: str  # its Orbax parameter checkpoint (weights.restore_params reads it)


def module(source: Source | None) -> Any:
  """The frozen model's nn.Module (deterministic), None without a source."""
  return None if source is None else models.build_model(source.model_config, deterministic=True)


def newest_step(checkpoints: storage.Path) -> storage.Path | None:
  """The step directory of the newest checkpoint whose parameters were written, None if there is none."""
  listed = checkpoints.iterdir() if checkpoints.is_dir() else ()
  steps = [p for p in listed if p.name.isdigit() and (p / "params" / weights.ORBAX_ITEM_METADATA).is_file()]
  return max(steps, key=lambda p: int(p.name), default=None)


def find(path: str) -> Source:
  """The config and parameters that `path` (see the module docstring) names."""
  where = storage.path(workdir_lib.resolve(path))
  if weights.is_converted(where):
    return Source(config_lib.load_config(str(where / "config.py")).model, str(where / "params"))
  if (where / "config.json").is_file() and (where / CHECKPOINTS).is_dir():
    step = newest_step(where / CHECKPOINTS)
    if step is None:
      raise UserError(f"{where / CHECKPOINTS} holds no checkpoint with parameters; train the teacher first")
    return Source(config_lib.load_config(str(where / "config.json")).model, str(step))
  step = where.parent if where.name == "params" else where
  run = step.parent.parent
  if step.parent.name == CHECKPOINTS and (run / "config.json").is_file():
    weights.params_item(step)  # a step that holds parameters, or one line saying what it is instead
    return Source(config_lib.load_config(str(run / "config.json")).model, str(step))
  raise UserError(f"{path} is neither a run's workdir, a step of its checkpoints nor a `convert --from-hf` output; "
                  "give one of them as objective.teacher")
