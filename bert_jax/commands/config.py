"""`bert-jax config`: print a config with its overrides applied (every key a user can set), or only where it
differs from another config (--diff)."""

import argparse

import ml_collections

from bert_jax import cli, config as config_lib, models, recipes

HELP = ("print a config after overrides, one key per line (every key --config.KEY=VALUE accepts), or with --diff "
        "only what it changes against the shared base or another config")
BASE = "base"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  cli.add_config_argument(parser)
  parser.add_argument("--diff", nargs="?", const=BASE, default=None, metavar="OTHER",
                      help="print only the keys that differ: against the settings every recipe starts from (the "
                           "shared base with the family's model defaults), or against config OTHER (e.g. "
                           "--config roberta_base --diff bert_base)")


def flat(config: ml_collections.ConfigDict | dict, prefix: str = "") -> dict:
  """Dotted key -> value of every leaf."""
  items = {}
  for key, value in config.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      items.update(flat(value, f"{prefix}{key}."))
    else:
      items[f"{prefix}{key}"] = value
  return items


def base_of(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """What every recipe starts from: recipes.base_config with the family's model defaults."""
  base = recipes.base_config()
  base.model = models.default_config(config.model.family)
  return base


def differences(config: ml_collections.ConfigDict, other: ml_collections.ConfigDict) -> list[str]:
  """One line per key that differs: `key: other's -> config's`, `+ key: value` (only in config), `- key: value`."""
  mine, theirs = flat(config), flat(other)
  lines = []
  for key in sorted(mine.keys() | theirs.keys()):
    if key not in theirs:
      lines.append(f"+ {key}: {mine[key]!r}")
    elif key not in mine:
      lines.append(f"- {key}: {theirs[key]!r}")
    elif mine[key] != theirs[key]:
      lines.append(f"  {key}: {theirs[key]!r} -> {mine[key]!r}")
  return lines


def run(args) -> int:
  config = config_lib.load_config(args.config, args.overrides)
  if args.diff is None:
    print(config)
    return 0
  other = base_of(config) if args.diff == BASE else config_lib.load_config(args.diff)
  against = "the shared base and the family's model defaults" if args.diff == BASE else args.diff
  print(f"{args.config} against {against}:")
  print("\n".join(differences(config, other)) or "  (no differences)")
  return 0
