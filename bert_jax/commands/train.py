"""`bert-jax train`: pretrain a config's model on its objective, sharded over every device of every process."""

import argparse

from bert_jax import cli, config as config_lib, parallel
from bert_jax.files import workdir as workdir_lib

HELP = "train a model (one process per host; multi-host runs join via cluster detection or --coordinator)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  cli.add_config_argument(parser)
  parser.add_argument("--workdir", required=True, help="directory for config.json, metrics.jsonl, tensorboard/")
  parser.add_argument("--init", help="start a fresh run from these parameters (OUT of `convert --from-hf`, its "
                                     "OUT/params, or a run's WORKDIR/checkpoints/STEP); ignored when resuming")
  parser.add_argument("--coordinator", help="HOST:PORT of process 0, for a multi-process run started by hand")
  parser.add_argument("--num-processes", type=int, help="number of processes of a multi-process run")
  parser.add_argument("--process-id", type=int, help="this process's index, 0 .. num-processes - 1")


def run(args) -> int:
  config = config_lib.load_config(args.config, args.overrides)  # config errors before joining a cluster
  parallel.enable_compilation_cache()
  parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
  from bert_jax.train import loop  # after distributed start-up: nothing may touch devices before it

  init = workdir_lib.resolve(args.init) if args.init else None
  loop.train(config, workdir_lib.resolve(args.workdir), init=init)
  return 0
