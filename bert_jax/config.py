"""Config loading: ml-collections files under configs/, `--config.a.b=value` overrides, validation."""

import ast
from collections.abc import Sequence
import difflib
import importlib.util
import json
from pathlib import Path
from typing import Any

import ml_collections

from bert_jax.errors import UserError
from bert_jax.files import storage

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def config_names() -> list[str]:
  return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))


def resolve_config_path(spec: str) -> tuple[Path | storage.Path, str | None]:
  """`configs/bert_base.py`, `bert_base`, or either with `:arg` (big_vision style variants)."""
  if storage.is_url(spec):  # a run's W/config.json in a bucket
    return storage.path(spec), None
  path_str, _, arg = spec.partition(":")
  path = Path(path_str)
  if path.is_dir():
    inside = f"{path / 'config.json'} (the run's saved config)" if (path / "config.json").is_file() else \
        f"a config file in it (e.g. {path / 'bert_base.py'}) or a config name such as bert_base"
    raise UserError(f"--config {path_str} is a directory; give {inside}")
  if not path.suffix:
    path = CONFIG_DIR / f"{path_str}.py"
  if not path.is_file():
    hint = ", ".join(config_names())
    raise UserError(f"config file '{path_str}' not found; give a path to a config file or one of: {hint}")
  return path, (arg or None)


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """A config file's get_config() (or get_config(arg)), or a run's saved W/config.json, with the overrides."""
  path, arg = resolve_config_path(spec)
  if path.suffix == ".json":
    try:
      config = ml_collections.ConfigDict(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
      raise UserError(f"{path} is not a saved config ({error}); give a config file or a run's config.json") from None
    config.rules = tuple(tuple(rule) for rule in config.get("rules", ()))
  else:
    module_spec = importlib.util.spec_from_file_location(f"bert_jax_config_{path.stem}", path)
    if module_spec is None or module_spec.loader is None or path.suffix != ".py":
      raise UserError(f"config file '{path}' is neither a .py config file nor a run's config.json")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
      raise UserError(f"config file '{path}' defines no get_config()")
    config = module.get_config(arg) if arg is not None else module.get_config()
  apply_overrides(config, overrides)
  validate(config)
  return config


def _leaf_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  keys = []
  for key, value in config.items():
    name = f"{prefix}{key}"
    keys.extend(_leaf_keys(value, name + ".") if isinstance(value, ml_collections.ConfigDict) else [name])
  return keys


def _parse_value(text: str, current: Any) -> Any:
  if isinstance(current, str):
    return text
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    lowered = text.lower()
    if lowered in ("true", "false"):
      return lowered == "true"
    if lowered == "none":
      return None
    value = text
  if isinstance(current, bool) and isinstance(value, int) and value in (0, 1):
    return bool(value)
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if isinstance(current, tuple) and isinstance(value, list):
    return tuple(value)
  return value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
  """Applies `section.key=value` (or `--config.section.key=value`) strings; unknown keys are errors. An override of
  objective.name comes first; then the objective's settings the config leaves out are written in with their
  defaults (as config.model holds its family's), so that each takes an override."""
  from bert_jax.objectives import fill_defaults

  names = [item for item in overrides if item.removeprefix("--config.").partition("=")[0] == "objective.name"]
  _apply(config, names)
  if "objective" in config:
    fill_defaults(config.objective)
  _apply(config, [item for item in overrides if item not in names])


def _apply(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
  known = _leaf_keys(config)
  for item in overrides:
    text = item[len("--config."):] if item.startswith("--config.") else item
    key, eq, raw = text.partition("=")
    if not eq:
      raise UserError(f"override '{item}' has no '='; write --config.{key}=VALUE")
    if key not in known:
      close = difflib.get_close_matches(key, known, n=1)
      hint = f"; did you mean '{close[0]}'?" if close else "; run `bert-jax config --config C` to list the keys"
      raise UserError(f"unknown config key '{key}'{hint}")
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
      node = node[part]
    current = node[leaf]
    value = _parse_value(raw, current)
    try:
      node[leaf] = value
    except TypeError as e:
      raise UserError(f"config key '{key}' expects {type(current).__name__}, got '{raw}'") from e


def _positive(config, *keys: str) -> None:
  for key in keys:
    node = config
    for part in key.split("."):
      node = node[part]
    if not isinstance(node, int) or isinstance(node, bool) or node <= 0:
      raise UserError(f"config key '{key}' must be a positive integer, got {node!r}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks what would otherwise fail deep inside a compile; model families add their own checks."""
  from bert_jax.models import validate_model_config  # the model registry knows each family's rules
  from bert_jax.objectives import check_family, check_keys  # each objective names the families it serves, its keys

  _positive(config, "train.steps", "train.batch_size", "train.log_every", "train.microbatches")
  if config.train.batch_size % config.train.microbatches:
    raise UserError(
        f"train.batch_size={config.train.batch_size} is not divisible by "
        f"train.microbatches={config.train.microbatches}")
  every = config.eval.every
  if not isinstance(every, int) or isinstance(every, bool) or every < 0:
    raise UserError(f"config key 'eval.every' must be >= 0 (0: no evaluation during training), got {every!r}")
  validate_model_config(config.model)
  check_family(config)
  check_keys(config)  # an objective key its objective does not know (a typo in a config file) stops here
  if config.model.get("attention") == "splash" and config.data.seq_len % 128:
    raise UserError(f"model.attention=splash runs on lengths that are multiples of 128, and data.seq_len is "
                    f"{config.data.seq_len}: set data.seq_len to one (e.g. {-(-config.data.seq_len // 128) * 128}) "
                    "or model.attention=auto")
