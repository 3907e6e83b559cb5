"""The model registry: `config.model.family` names a module that defines

  make_config(model_config) -> a frozen dataclass of the family's settings
  validate(cfg)             -> raises UserError on impossible sizes
  build(cfg, deterministic) -> the pretraining nn.Module
  build_encoder(cfg)        -> the bare encoder as Hugging Face counts it (for `bert-jax params`)
  example_inputs(cfg)       -> keyword arguments that `init` can trace the model with
  max_sequence_length(cfg)  -> the longest input its position table holds (optional: absent when positions
                               are relative and any length works)

Nothing else in the codebase switches on a family's name.
"""

import dataclasses
import importlib
from types import ModuleType
from typing import Any

from bert_jax.errors import UserError

FAMILIES = {
    "bert": "bert_jax.models.bert",
    "xlnet": "bert_jax.models.xlnet",
    "t5": "bert_jax.models.t5",
}


def family(model_config: Any) -> ModuleType:
  name = model_config.get("family", None)
  if name not in FAMILIES:
    raise UserError(f"model.family must be one of {', '.join(FAMILIES)}, got {name!r}")
  return importlib.import_module(FAMILIES[name])


def make_config(model_config: Any):
  return family(model_config).make_config(model_config)


def validate_model_config(model_config: Any) -> None:
  module = family(model_config)
  module.validate(module.make_config(model_config))


def max_sequence_length(model_config: Any) -> int | None:
  """The longest input the family's position table holds; None when any length works."""
  module = family(model_config)
  limit = getattr(module, "max_sequence_length", None)
  return limit(module.make_config(model_config)) if limit else None


def build_model(model_config: Any, deterministic: bool = True):
  module = family(model_config)
  return module.build(module.make_config(model_config), deterministic)


def dataclass_config(cls: type, model_config: Any, family_name: str):
  """A family's frozen settings dataclass from config.model; a key the family does not know is an error."""
  values = {k: v for k, v in dict(model_config).items() if k != "family"}
  unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
  if unknown:
    raise UserError(f"unknown model keys for the {family_name} family: {', '.join(unknown)}")
  return cls(**values)
