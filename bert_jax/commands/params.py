"""`bert-jax params`: exact parameter counts with a readable breakdown, from abstract shapes."""

import argparse
import json

from bert_jax import cli, config as config_lib, params

HELP = "count a config's parameters (the model model.head names and the bare encoder) without allocating them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  cli.add_config_argument(parser)
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  parser.add_argument("--depth", type=int, default=2, help="levels of the breakdown (default 2)")


def run(args) -> int:
  config = config_lib.load_config(args.config, args.overrides)
  counts = params.count_model(config.model, depth=args.depth)
  if args.json:
    print(json.dumps({"config": args.config, "total": counts["total"], "encoder": counts.get("encoder"),
                      "breakdown": dict(counts["rows"])}))
    return 0
  width = max(len(name) for name, _ in counts["rows"]) + 2
  print(f"{args.config}: {config.model.family} family")
  for name, n in counts["rows"]:
    print(f"  {name:<{width}}{n:>15,}")
  head = config.model.get("head", "pretraining")
  model = "pretraining model" if head == "pretraining" else f"task model, head={head}"
  print(f"  {f'total ({model})':<{width}}{counts['total']:>15,}")
  if counts.get("encoder") is not None:
    print(f"  {'encoder (bare, as HF counts it)':<{width}}{counts['encoder']:>15,}")
  return 0
