"""`bert-jax prepare`: tokenize a source once into sharded TFRecords (training does this too when needed)."""

import argparse

from bert_jax import cli, config as config_lib
from bert_jax.errors import UserError
from bert_jax.files import workdir as workdir_lib

HELP = "tokenize data.source into sharded TFRecords under <workdir>/data (training tokenizer first if needed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
  cli.add_config_argument(parser)
  parser.add_argument("--workdir", required=True, help="where the tokenizer and prepared data go")
  parser.add_argument("--source", help="overrides data.source: demo, a file, directory or glob, jsonl:PATH, tfds:NAME")
  parser.add_argument("--output", help="overrides data.prepared_dir (default: <workdir>/data)")
  parser.add_argument("--process-index", type=int, help="prepare this share of the source (with --process-count; "
                      "default: JAX's process index); process 0 writes the metadata once every share is in")
  parser.add_argument("--process-count", type=int, help="the number of processes (machines) preparing at once, "
                      "each run with its --process-index over the same workdir or output (default: JAX's)")


def run(args) -> int:
  from bert_jax.data import pipeline  # TensorFlow loads only when the command runs

  overrides = [*args.overrides, *([f"data.source={args.source}"] if args.source else []),
               *([f"data.prepared_dir={args.output}"] if args.output else [])]
  config = config_lib.load_config(args.config, overrides)
  workdir = workdir_lib.resolve(args.workdir)
  if config.data.get("stream"):
    raise UserError("data.stream=true tokenizes the source while training, so there is nothing to prepare; run "
                    "`bert-jax train` (or drop --config.data.stream=true to prepare the data)")
  if (args.process_index is None) != (args.process_count is None):
    raise UserError("give --process-index and --process-count together")
  metadata = pipeline.prepare_if_needed(config, workdir, args.process_index, args.process_count, wait=False)
  if metadata is None:
    print(f"process {args.process_index} of {args.process_count}: share written; process 0 writes the metadata once "
          "every share is in")
    return 0
  for split, shards in metadata["splits"].items():
    totals = {key: sum(s[key] for s in shards) for key in ("documents", "sentences", "tokens")}
    print(f"{split}: {totals['documents']:,} documents, {totals['sentences']:,} sentences, {totals['tokens']:,} tokens "
          f"in {len(shards)} files")
  print(f"prepared data: {pipeline.prepared_dir(config, workdir)} (tokenizer {metadata['tokenizer']})")
  return 0
