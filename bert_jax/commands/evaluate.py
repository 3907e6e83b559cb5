"""`bert-jax evaluate`: restore checkpoints of a run on this machine's devices and report the objective's metrics."""

import argparse
import json

from bert_jax import cli, config as config_lib, parallel
from bert_jax.files import workdir as workdir_lib

HELP = "evaluate checkpoints of a workdir on fixed held-out batches (writes W/eval/<step>.json and TensorBoard)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  cli.add_config_argument(parser)
  parser.add_argument("--workdir", required=True, help="the training run's directory (holds checkpoints/)")
  which = parser.add_mutually_exclusive_group()
  which.add_argument("--step", type=int, help="the checkpoint of this step (default: the latest)")
  which.add_argument("--all", action="store_true", help="every checkpoint, in order of steps")
  which.add_argument("--watch", action="store_true",
                     help="evaluate each new checkpoint as training writes it, until the one of train.steps")
  parser.add_argument("--json", action="store_true", help="print one JSON object per checkpoint")


def _line(record: dict) -> str:
  return " | ".join([f"step {record['step']}"] + [f"{k} {v:.4g}" for k, v in record.items() if k != "step"])


def run(args) -> int:
  config = config_lib.load_config(args.config, args.overrides)
  parallel.enable_compilation_cache()
  parallel.initialize_distributed()
  from bert_jax import evaluate  # after distributed start-up: nothing may touch devices before it

  workdir = workdir_lib.resolve(args.workdir)
  if args.watch:
    records = evaluate.watch(config, workdir)
  else:
    records = evaluate.evaluate(config, workdir, args.step, args.all)
  for record in records:
    print(json.dumps(record) if args.json else _line(record), flush=True)
  return 0
