"""`bert-jax augment`: a task's training split grown by TinyBERT's word replacement (see bert_jax/augment.py), for
task-specific distillation to read with --config.task.augmented=FILE."""

import argparse

from bert_jax import parallel
from bert_jax.errors import UserError
from bert_jax.files import workdir as workdir_lib

HELP = ("TinyBERT's data augmentation: write a task's training examples with words replaced by a masked LM's guesses "
        "(or GloVe neighbours), for `finetune --config.task.augmented=FILE`")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--init", required=True,
                      help="the masked LM that proposes the words: a training run's WORKDIR (its newest checkpoint) or "
                           "OUT of convert --from-hf")
  parser.add_argument("--task", required=True, help="the task whose training split is augmented (as finetune's "
                                                    "--task: glue/NAME, demo, files with --config.task.*)")
  parser.add_argument("--task-dir", default="", help="the task's data directory (as finetune's --task-dir)")
  parser.add_argument("--output", required=True, help="the JSON-lines file to write (finetune's task.augmented)")
  parser.add_argument("--copies", type=int, default=None,
                      help="variants drawn per text (the release's N: 10 for MNLI and QQP, 20 for SST-2 and QNLI, "
                           "otherwise 30)")
  parser.add_argument("--candidates", type=int, default=15, help="candidates per word (the release's M, 15)")
  parser.add_argument("--probability", type=float, default=0.4,
                      help="the chance a word is replaced in a variant (the release's p, 0.4)")
  parser.add_argument("--word-vectors", default="", help="GloVe's text file: the candidates of words of several "
                                                         "pieces are their nearest words, as the release's")
  parser.add_argument("--seed", type=int, default=0, help="the seed of the replacements drawn")
  parser.add_argument("--examples", type=int, default=None,
                      help="augment only the first N training examples (a look at the variants before the whole split)")


def run(args) -> int:
  parallel.enable_compilation_cache()
  from bert_jax import augment, finetune, predict  # after the argument parsing: they import the training stack
  from bert_jax.convert import weights
  from bert_jax.data import tasks as tasks_lib

  if args.overrides and not all(o.startswith("--config.task.") for o in args.overrides):
    raise UserError("augment takes --config.task.* overrides only (the task's files and columns)")
  model = finetune.pretrained(args.init)
  task_config = finetune.task_config(model, {"name": args.task, "data_dir": workdir_lib.resolve(args.task_dir)
                                             if args.task_dir else ""}, args.overrides)
  task = tasks_lib.load(task_config)
  copies = args.copies if args.copies is not None else augment.RELEASE_COPIES.get(task.name, augment.DEFAULT_COPIES)
  settings = augment.Settings(copies, args.candidates, args.probability)
  settings.check()
  vectors = augment.WordVectors(args.word_vectors) if args.word_vectors else None
  init = workdir_lib.resolve(args.init)
  predictor = predict.from_converted(init) if weights.is_converted(init) else predict.from_run(init)
  if args.examples is not None and args.examples < 1:
    raise UserError(f"--examples must be at least 1, got {args.examples}")
  rows = augment.augment_task(predictor, task, settings, args.seed, vectors, args.examples)
  path = augment.write(rows, workdir_lib.resolve(args.output))
  originals = len(task.read("train")[:args.examples])
  print(f"wrote {path}: {len(rows):,} training examples from the task's {originals:,}; fine-tune on them with "
        f"--config.task.augmented={args.output}", flush=True)
  return 0
