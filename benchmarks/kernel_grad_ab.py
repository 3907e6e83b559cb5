"""Before/after of layers.kernel_dot_general (kernel gradients computed in the kernel's layout) in one process:

    python benchmarks/kernel_grad_ab.py [--config bert_base] [--rounds 4] [--batch 8] [--seq 128] [--config.x=y ...]

Builds the train step twice (layers.KERNEL_GRAD_IN_LAYOUT False: JAX's own rule, then True), alternates their steps
so that machine noise falls on both, and prints each one's median step time and the ratio.
"""

import argparse
import statistics
import time

import jax

from bert_jax import config as config_lib
from bert_jax.benchmark import run as bench
from bert_jax.models import layers
from bert_jax.train.loop import Trainer


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="bert_base")
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=128)
  args, overrides = parser.parse_known_args()
  overrides = [o.removeprefix("--config.") for o in overrides]
  config = config_lib.load_config(args.config, overrides)
  overrides += bench.bench_overrides(config, args.batch, args.seq, overrides) + ["data.source=synthetic"]
  runs = {}
  for in_layout in (False, True):
    layers.KERNEL_GRAD_IN_LAYOUT = in_layout  # read when the step is traced, at its first call
    trainer = Trainer(config_lib.load_config(args.config, overrides))
    state, batch = trainer.init_state(), next(trainer.batches("", 0))
    with trainer.context():
      state = jax.block_until_ready(trainer.train_step(state, batch)[0])
    runs[in_layout] = {"trainer": trainer, "state": state, "batch": batch, "times": []}
  for _ in range(args.rounds):
    for run in runs.values():
      with run["trainer"].context():
        start = time.perf_counter()
        run["state"] = jax.block_until_ready(run["trainer"].train_step(run["state"], run["batch"])[0])
        run["times"].append(time.perf_counter() - start)
  medians = {in_layout: statistics.median(run["times"]) for in_layout, run in runs.items()}
  for in_layout, run in runs.items():
    label = "kernel gradient in the kernel's layout" if in_layout else "JAX's rule (dy^T . x, transposed)"
    print(f"{args.config} {label:40s} median {medians[in_layout]:.3f} s  steps "
          + ", ".join(f"{t:.2f}" for t in run["times"]))
  print(f"speed-up {medians[False] / medians[True]:.3f}x")


if __name__ == "__main__":
  main()
