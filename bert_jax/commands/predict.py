"""`bert-jax predict`: a trained model on text from the command line or a file (see bert_jax/predict.py)."""

import argparse
import json

from bert_jax import config as config_lib, parallel
from bert_jax.errors import UserError
from bert_jax.files import storage

HELP = ("run a trained model on text: fill-mask at [MASK] (BERT, RoBERTa, ALBERT, XLNet), a fine-tuned classifier's "
        "label (a pair as two texts joined by a tab), span infilling at "
        "<extra_id_N> (T5), the next tokens (GPT-2: --config.objective.max_new_tokens, temperature, top_p); "
        "from a run (--workdir) or a `convert --from-hf` directory (--model)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--workdir", help="a training run's directory: its config.json, checkpoints and tokenizer")
  source.add_argument("--model", metavar="DIR", help="a directory `bert-jax convert --from-hf` wrote (config.py, "
                                                     "params)")
  parser.add_argument("--step", type=int, help="with --workdir: the checkpoint of this step (default: the newest)")
  parser.add_argument("--config", help="with --workdir: the run's config (default: WORKDIR/config.json)")
  parser.add_argument("--tokenizer", default="", help="with --model: its SentencePiece .model (default: the "
                                                      "config's data.tokenizer)")
  parser.add_argument("--text", action="append", default=[], help="an input (repeatable)")
  parser.add_argument("--file", help="a text file with one input per line (blank lines skipped)")
  parser.add_argument("--top-k", type=int, default=5, help="candidates shown per [MASK] (default 5); GPT-2 sampling: "
                                                                   "among the k most likely tokens")
  parser.add_argument("--json", action="store_true", help="print one JSON object per input")


def texts(args) -> list[str]:
  found = list(args.text)
  if args.file:
    path = storage.path(args.file)
    if not path.is_file():
      raise UserError(f"--file {path} does not exist")
    found += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
  if not found:
    raise UserError("no input: give --text \"... [MASK] ...\" (repeatable) or --file F with one input per line")
  return found


def lines(record: dict) -> list[str]:
  """A record as a person reads it: the filled text, then the candidates at each blank."""
  shown = [f"> {record['input']}", f"  {record['output']}"]
  for number, prediction in enumerate(record["predictions"], 1):
    if "candidates" in prediction:
      guesses = ", ".join(f"{c['token']!r} {c['probability']:.3f}" for c in prediction["candidates"])
      shown.append(f"  {prediction['blank']} {number}: {guesses}")
    else:
      shown.append(f"  {prediction['blank']}: {prediction['text']!r}")
  return shown


def run(args) -> int:
  inputs = texts(args)
  if args.model and (args.step is not None or args.config):
    raise UserError("--step and --config go with --workdir; --model reads the config.py and params beside it")
  if args.workdir and args.tokenizer:
    raise UserError("--tokenizer goes with --model; a run's tokenizer is the one its data was prepared with")
  parallel.enable_compilation_cache()
  from bert_jax import predict  # after the argument checks: it imports the training stack

  if args.workdir:
    config = config_lib.load_config(args.config, args.overrides) if args.config else None
    predictor = predict.from_run(args.workdir, args.step, config, args.overrides)
  else:
    predictor = predict.from_converted(args.model, args.tokenizer, args.overrides)
  for record in predictor(inputs, args.top_k):
    print(json.dumps(record, ensure_ascii=False) if args.json else "\n".join(lines(record)), flush=True)
  return 0
