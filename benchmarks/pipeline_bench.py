"""Input pipeline throughput: tokens per second of finished batches (masking, pairs, padding included).

  python benchmarks/pipeline_bench.py [--config bert_tiny] [--seq-lens 128,512] [--batches 50] [--workdir W]

The demo corpus is prepared into W (a temporary directory by default), then for each sequence length the
training stream is read for --batches batches after a warm-up; the number printed counts every position of a
batch (seq_len x batch size), which is what a train step consumes. BERT's max_predictions per length: 20 at
128, 80 at 512 (0.15 x seq_len rounded up otherwise).
"""

import argparse
import math
import tempfile

from bert_jax import config as config_lib
from bert_jax.bench.run import pipeline_tokens_per_second

BERT_PREDICTIONS = {128: 20, 512: 80}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="bert_tiny")
  parser.add_argument("--seq-lens", default="128,512")
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--batches", type=int, default=50)
  parser.add_argument("--warmup", type=int, default=5)
  parser.add_argument("--workdir", default="")
  args = parser.parse_args()
  workdir = args.workdir or tempfile.mkdtemp(prefix="pipeline_bench_")
  for seq_len in (int(s) for s in args.seq_lens.split(",")):
    predictions = BERT_PREDICTIONS.get(seq_len, math.ceil(0.15 * seq_len))
    config = config_lib.load_config(args.config, [
        f"data.seq_len={seq_len}", f"model.max_position={max(seq_len, 512)}",
        f"objective.max_predictions={predictions}", f"train.batch_size={args.batch_size}", "data.source=demo"])
    rate = pipeline_tokens_per_second(config, workdir, args.batches, args.warmup)
    print(f"{args.config} objective={config.objective.name} packing={config.objective.packing} "
          f"sentence_task={config.objective.sentence_task} seq_len={seq_len} batch={args.batch_size}: "
          f"{rate:,.0f} tokens/s", flush=True)


if __name__ == "__main__":
  main()
