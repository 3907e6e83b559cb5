"""`bert-jax finetune`: a pretrained model fine-tuned on a task (GLUE, SQuAD, your own files, or the built-in demo
task), once, over seeds, or over a grid of learning rates and batch sizes."""

import argparse
import itertools
import statistics

from bert_jax import parallel
from bert_jax.errors import UserError
from bert_jax.files import workdir as workdir_lib

HELP = ("fine-tune a pretrained model (a run's workdir or checkpoint, or a `convert --from-hf` directory) on a task: "
        "glue/NAME, squad, demo, or files; evaluates every epoch and writes test predictions")
BERT_GRID = ("5e-5,3e-5,2e-5", "16,32")  # the BERT paper's fine-tuning grid (appendix A.3), 3 epochs


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--init", required=True,
                      help="the pretrained model: a training run's WORKDIR (its newest checkpoint), "
                           "WORKDIR/checkpoints/STEP, or OUT of convert --from-hf")
  parser.add_argument("--step", type=int, help="with a run's workdir: the checkpoint of this step")
  parser.add_argument("--scratch", action="store_true", help="the same model and tokenizer from random parameters "
                                                             "(the baseline pretraining must beat)")
  parser.add_argument("--task", required=True,
                      help="glue/cola, glue/sst2, glue/mrpc, glue/qqp, glue/stsb, glue/mnli, glue/qnli, glue/rte, "
                           "glue/wnli (tfds:glue/NAME: from TFDS), squad, demo, or files (set "
                           "--config.task.train=... and the columns)")
  parser.add_argument("--task-dir", default="", help="glue/NAME: the GLUE data directory (CoLA/, SST-2/, ...); "
                                                     "tfds:glue/NAME: the TFDS data directory; squad: the "
                                                     "directory of train-v1.1.json and dev-v1.1.json")
  parser.add_argument("--workdir", required=True, help="directory for the fine-tuning run")
  parser.add_argument("--seeds", type=int, default=1, help="fine-tune with seeds 0..N-1 (WORKDIR/seed_K) and report "
                                                           "the median of each metric, as the papers report")
  parser.add_argument("--learning-rates", default="",
                      help="comma-separated learning rates to try (WORKDIR/lr_X-batch_Y)")
  parser.add_argument("--batch-sizes", default="", help="comma-separated batch sizes to try")
  parser.add_argument("--grid", action="store_true", help="BERT's grid: learning rates 5e-5, 3e-5, 2e-5 x batch "
                                                          "sizes 16, 32; the best by the task's metric")


def _line(record: dict) -> str:
  return " | ".join([f"step {record['step']}"] + [f"{k} {v:.4f}" for k, v in record.items() if k != "step"])


def _values(text: str, kind: type, name: str) -> list:
  try:
    return [kind(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise UserError(f"{name} must be comma-separated numbers, got {text!r}") from None


def run(args) -> int:
  if args.seeds < 1:
    raise UserError(f"--seeds must be at least 1, got {args.seeds}")
  rates_text, sizes_text = BERT_GRID if args.grid else (args.learning_rates, args.batch_sizes)
  rates, sizes = _values(rates_text, float, "--learning-rates"), _values(sizes_text, int, "--batch-sizes")
  parallel.enable_compilation_cache()
  parallel.initialize_distributed()
  from bert_jax import finetune  # after distributed start-up: nothing may touch devices before it

  model = finetune.pretrained(args.init, args.step)
  task = {"name": args.task, "data_dir": workdir_lib.resolve(args.task_dir) if args.task_dir else ""}
  grid = list(itertools.product(rates or [None], sizes or [None]))
  results = []
  for rate, size in grid:
    overrides = list(args.overrides) + ([f"--config.optimizer.learning_rate={rate}"] if rate else []) + (
        [f"--config.train.batch_size={size}"] if size else [])
    base = args.workdir if len(grid) == 1 else f"{args.workdir}/lr_{rate or 'recipe'}-batch_{size or 'recipe'}"
    records = []
    for seed in range(args.seeds):
      config = finetune.make_config(model, task, overrides)
      config.seed = config.seed + seed
      workdir = base if args.seeds == 1 else f"{base}/seed_{seed}"
      record = finetune.run(config, workdir, None if args.scratch else model.params)
      print(f"best dev ({workdir}): {_line(record)}", flush=True)
      records.append(record)
    median = {k: statistics.median(r[k] for r in records) for k in records[0] if k != "step"}
    if args.seeds > 1:
      print(f"median over {args.seeds} seeds ({base}): " + " | ".join(f"{k} {v:.4f}" for k, v in median.items()),
            flush=True)
    results.append((base, median, config.checkpoint.best_metric))
  if len(grid) > 1 and results[0][2]:
    metric = results[0][2]
    base, median, _ = max(results, key=lambda r: r[1][metric])
    print(f"best of the grid by {metric}: {base}: " + " | ".join(f"{k} {v:.4f}" for k, v in median.items()),
          flush=True)
  return 0
