"""The steps every objective's settings share: a frozen dataclass read once from config.objective, a key the
objective does not know refused, and the checks of single settings (ranges, positive integers, choices), each
failing as one UserError line.

An objective module defines its settings as a frozen dataclass deriving from `Settings`, whose defaults are what a
config without the key runs (the fallback the code had where it had one, else the value of the recipe that trains
the objective: bert_jax/recipes), with a `check` of the settings on their own; the objective class names it as
SETTINGS, builds it with `from_config` in __init__ (self.settings) and checks there what relates the settings to
data.seq_len and the model. `bert_jax.objectives.fill_defaults` writes the defaults into config.objective where a
config leaves them out, so every setting takes a --config.objective.KEY=VALUE override.
"""

from collections.abc import Iterable
import dataclasses
import math
from typing import Any, Protocol, TypeVar

from bert_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Settings:
  """An objective's settings: each a field with its default; `check` refuses impossible values."""

  def check(self) -> None:
    """The checks of the settings on their own (no data or model); an objective's dataclass adds its own."""


S = TypeVar("S", bound=Settings)


def check_keys(cls: type, objective_config: Any) -> None:
  """A key of config.objective (`name` aside) that the settings `cls` do not know is an error naming the objective
  and the keys it knows."""
  known = [f.name for f in dataclasses.fields(cls)]
  unknown = sorted(set(objective_config.keys()) - {"name", *known})
  if unknown:
    raise UserError(f"unknown objective keys for objective {objective_config.get('name')}: {', '.join(unknown)}; "
                    f"it knows {', '.join(known)}")


def from_config(cls: type[S], objective_config: Any) -> S:
  """An objective's frozen settings from config.objective (`name` aside), checked (`check_keys`, then the
  dataclass's `check`). A list (a JSON-saved tuple) becomes a tuple."""
  check_keys(cls, objective_config)
  values = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(objective_config).items() if k != "name"}
  settings = cls(**values)
  settings.check()
  return settings


def defaults(cls: type) -> dict:
  """{key: default} of a settings dataclass, in field order."""
  return {f.name: f.default for f in dataclasses.fields(cls)}


def check_interval(settings: Settings, name: str, interval: str, note: str = "", integer: bool = False) -> None:
  """objective.<name> lies in `interval`, written "(0, 1)", "[0, 1]", "(0, inf)" or "[2, inf)" (a bracket: the
  bound included), and with `integer` is an integer; `note` explains the setting in the error."""
  value = getattr(settings, name)
  low_bound, high_bound = interval[0], interval[-1]
  low, high = (float(x) for x in interval[1:-1].split(","))
  number = isinstance(value, (int, float)) and not isinstance(value, bool) and (isinstance(value, int) or not integer)
  inside = number and (low < value if low_bound == "(" else low <= value) and (
      value < high if high_bound == ")" else value <= high)
  if not inside:
    if math.isinf(high):
      bound = f"{'>' if low_bound == '(' else '>='} {low:g}"
      wanted = f"an integer {bound}" if integer else bound
    else:
      wanted = f"{'an integer ' if integer else ''}in {interval}"
    raise UserError(f"objective.{name} must be {wanted}{note}, got {value!r}")


def check_positive(settings: Settings, *names: str) -> None:
  """Each objective.<name> is a positive integer."""
  for name in names:
    value = getattr(settings, name)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise UserError(f"objective.{name} must be a positive integer, got {value!r}")


def check_choice(settings: Settings, name: str, choices: Iterable[str]) -> None:
  """objective.<name> is one of `choices`."""
  choices = tuple(choices)
  if getattr(settings, name) not in choices:
    names = " or ".join([", ".join(choices[:-1]), choices[-1]] if len(choices) > 1 else choices)
    raise UserError(f"objective.{name} must be {names}, got '{getattr(settings, name)}'")


class TokenFractions(Protocol):
  """Settings that show masked tokens as [MASK] or as a random token (masked_lm.Masking)."""

  @property
  def mask_token_fraction(self) -> float: ...

  @property
  def random_token_fraction(self) -> float: ...


def check_token_fractions(settings: TokenFractions) -> None:
  """mask_token_fraction + random_token_fraction, the shares of the masked tokens shown as [MASK] and as a random
  token (the rest are left as they are), is in [0, 1]."""
  if not 0 <= settings.mask_token_fraction + settings.random_token_fraction <= 1:
    raise UserError("objective.mask_token_fraction + objective.random_token_fraction must be in [0, 1], got "
                    f"{settings.mask_token_fraction} + {settings.random_token_fraction}")
