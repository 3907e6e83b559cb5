"""The model registry: `config.model.family` names a module that defines

  FAMILY                    -> its descriptor (bert_jax.models.family.Family): everything the family owns beyond the
                               model, as names and data that the layers above look up (default objective, Hugging
                               Face model types and converter, tokenizer framings, fine-tuning recipe changes,
                               benchmark references)
  make_config(model_config) -> a frozen dataclass of the family's settings (a `shared.Settings`), whose
                               defaults are the family's defaults (`default_config` builds config.model)
  validate(cfg)             -> raises UserError on impossible sizes
  build(cfg, deterministic) -> the pretraining nn.Module, or with cfg.head classification / span the task model
                               (encoder under the pretraining model's parameter names plus a head; shared.HEADS)
  build_encoder(cfg)        -> the bare encoder as Hugging Face counts it (for `bert-jax params`)
  example_inputs(cfg)       -> keyword arguments that `init` can trace the model (the one cfg.head names) with
  to_layout(params, cfg, scanned) -> the parameter tree in the scanned (True) or unscanned layout
  max_sequence_length(cfg)  -> the longest input its position table holds (optional: absent when positions
                               are relative and any length works)

bert_jax/models/protocol.py writes this interface as typing.Protocol classes (FamilyModule, PositionTable), which
`family` returns. The steps these share (settings, validation, remat/scan of a layer stack, layouts) live in
`bert_jax.models.shared`. A new family is its module (with its FAMILY), its converter and configs, and one line in
FAMILIES; an objective names the families it serves (bert_jax.objectives). Nothing else in the codebase switches on
a family's name: it asks the family's descriptor (tests/test_family_descriptor.py holds this).

Shape letters: an array's name ends in its shape, one capital letter per axis (x_BLD: [batch, length, width]),
and a letter means the same everywhere:

  B batch
  L sequence length: the query positions
  S key/value positions: the keys a query attends (the encoder's in cross-attention; XLNet: memory plus current)
  T decoder (target) length
  M memory length (XLNet)
  P predicted positions (masked tokens, targets)
  R relative positions or distance buckets
  D model width (hidden_size)
  E embedding width where it differs from D (ALBERT, ELECTRA)
  F feed-forward width
  N attention heads
  K width of one head (key/value features)
  V vocabulary
  C labels
  Y layers (XLNet's memory: one per layer)
  X concatenated features (SpanBERT's SBO input: two states and a position embedding)
  1, 2 an axis of that size (1: broadcast; 2: start/end logits, same/other segment)

Self-attention within one sequence may name its keys L too (bias_1NLL, perm_mask_BLL). A lowercase suffix is an
index, not a shape (layers_k: layer k's parameters).
"""

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any, cast

import ml_collections

from bert_jax.errors import UserError
from bert_jax.models.family import Family, Framing

if TYPE_CHECKING:  # flax and the layers: imported where a family module is
  import flax.linen as nn

  from bert_jax.models.protocol import FamilyModule
  from bert_jax.models.shared import Settings

FAMILIES = {
    "bert": "bert_jax.models.bert",
    "xlnet": "bert_jax.models.xlnet",
    "t5": "bert_jax.models.t5",
    "electra": "bert_jax.models.electra",
    "spanbert": "bert_jax.models.spanbert",
    "gpt2": "bert_jax.models.gpt2",
    "bart": "bert_jax.models.bart",
    "ernie": "bert_jax.models.ernie",
    "distilbert": "bert_jax.models.distilbert",
}


def family(model_config: Any) -> "FamilyModule":
  """The module of config.model's family (the interface: bert_jax.models.protocol.FamilyModule)."""
  name = model_config.get("family", None)
  if name not in FAMILIES:
    raise UserError(f"model.family must be one of {', '.join(FAMILIES)}, got {name!r}")
  # each module in FAMILIES is one (mypy checks them in models/protocol.py, tests/test_protocols.py at run time)
  return cast("FamilyModule", importlib.import_module(FAMILIES[name]))


def descriptor(model_config: Any) -> Family:
  """The descriptor of config.model's family."""
  return family(model_config).FAMILY


def descriptors() -> list[Family]:
  """Every family's descriptor, in FAMILIES' order."""
  return [descriptor({"family": name}) for name in FAMILIES]


def framing(name: str, key: str = "the framing") -> Framing:
  """The framing `name` (a Hugging Face model_type, as objective.framing and exports name it) of whichever family
  owns it."""
  framings = {named: found for f in descriptors() for named, found in f.framings.items()}
  if name not in framings:
    raise UserError(f"{key} must be one of {', '.join(framings)}, got {name!r}")
  return framings[name]


def make_config(model_config: Any) -> "Settings":
  return family(model_config).make_config(model_config)


def validate_model_config(model_config: Any) -> None:
  module = family(model_config)
  module.validate(module.make_config(model_config))


def max_sequence_length(model_config: Any) -> int | None:
  """The longest input the family's position table holds; None when any length works."""
  module = family(model_config)
  limit = getattr(module, "max_sequence_length", None)
  return limit(module.make_config(model_config)) if limit else None


def build_model(model_config: Any, deterministic: bool = True) -> "nn.Module":
  module = family(model_config)
  return module.build(module.make_config(model_config), deterministic)


def default_config(name: str, **overrides) -> ml_collections.ConfigDict:
  """config.model for a family: its settings dataclass's defaults, then `overrides`."""
  module = family({"family": name})
  model = ml_collections.ConfigDict({"family": name, **dataclasses.asdict(module.make_config({}))})
  model.update(overrides)
  return model
