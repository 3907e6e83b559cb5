"""`bert-jax config`: print a config with its overrides applied (every key a user can set)."""

import argparse

from bert_jax import cli, config as config_lib

HELP = "print a config after overrides, one key per line (every key --config.KEY=VALUE accepts)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  cli.add_config_argument(parser)


def run(args) -> int:
  config = config_lib.load_config(args.config, args.overrides)
  print(config)
  return 0
