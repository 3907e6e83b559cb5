"""The model-family module interface (bert_jax/models/__init__.py describes each member) as typing.Protocol classes:
a family's module (bert_jax/models/bert.py, ...) satisfies them structurally, as mypy checks a module against a
Protocol.

  FamilyModule    what every family module defines (FAMILY, make_config, validate, build, build_encoder,
                  example_inputs, to_layout); `models.family(...)` returns one
  PositionTable   a family whose position table bounds the input: max_sequence_length(cfg) (absent where positions
                  are relative and any length works)

A family function takes its own settings dataclass (BertConfig, T5Config, ...) as cfg, which the Protocol writes as
Any: each family's cfg is the one its make_config returns. mypy checks each registered module against the Protocols
(the block at the end of this module); tests/test_protocols.py checks at run time that each has every member.
"""

from typing import Any, Protocol

import flax.linen as nn

from bert_jax.models.family import Family
from bert_jax.models.shared import Settings


class FamilyModule(Protocol):
  """A family's module (config.model.family names it in models.FAMILIES)."""

  FAMILY: Family

  def make_config(self, model_cfg: Any) -> Settings: ...

  def validate(self, cfg: Any) -> None: ...

  def build(self, cfg: Any, deterministic: bool = True) -> nn.Module: ...

  def build_encoder(self, cfg: Any) -> nn.Module | None: ...

  def example_inputs(self, cfg: Any, batch: int = 1, length: int = 8) -> dict: ...

  def to_layout(self, params: dict, cfg: Any, scanned: bool) -> dict: ...


class PositionTable(Protocol):
  """A family whose position table holds at most max_sequence_length(cfg) input tokens."""

  def max_sequence_length(self, cfg: Any) -> int: ...
