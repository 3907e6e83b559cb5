"""Where a train step's time goes: forward, forward + backward, the optimizer update, and the whole step.

  python benchmarks/step_breakdown.py [--config bert_base] [--batch 8] [--seq 128] [--steps 5] [--config.x=y ...]

Each part is jitted on its own with the Trainer's shardings and timed (median of --steps after one warm-up
call); the parts overlap (the step = forward + backward + update), so their differences say what each costs.
"""

import argparse
import statistics
import time

import jax

from bert_jax import config as config_lib
from bert_jax.bench import run as bench
from bert_jax.objectives import training_loss
from bert_jax.train.trainer import Trainer


def median_seconds(fn, *args, steps: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="bert_base")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=128)
  parser.add_argument("--steps", type=int, default=5)
  args, overrides = parser.parse_known_args()
  config = config_lib.load_config(args.config, overrides)
  overrides += bench.bench_overrides(config, args.batch, args.seq) + ["data.source=synthetic"]
  trainer = Trainer(config_lib.load_config(args.config, overrides))
  state = trainer.init_state()
  batch = next(trainer.batches("", 0))
  objective, model = trainer.objective, trainer.model
  key = jax.random.key(0)

  def loss(params, batch):
    sums, _ = objective.forward(model, params, batch, rngs={"dropout": key})
    return training_loss(sums, objective.counts(batch))

  grads = jax.jit(jax.grad(loss))(state.params, batch)
  update = jax.jit(lambda grads, opt_state, params: trainer.optimizer.update(grads, opt_state, params))
  tokens = trainer.config.train.batch_size * trainer.config.data.seq_len
  with trainer.context():
    parts = {"forward": median_seconds(jax.jit(loss), state.params, batch, steps=args.steps),
             "forward + backward": median_seconds(jax.jit(jax.grad(loss)), state.params, batch, steps=args.steps),
             "optimizer update": median_seconds(update, grads, state.opt_state, state.params, steps=args.steps)}
    step = lambda state: trainer.train_step(state, batch)[0]
    state = step(state)
    times = []
    for _ in range(args.steps):
      start = time.perf_counter()
      state = jax.block_until_ready(step(state))
      times.append(time.perf_counter() - start)
    parts["train step"] = statistics.median(times)
  for name, seconds in parts.items():
    print(f"{name:<20}{seconds:8.3f} s  ({tokens / seconds:,.0f} tokens/s)")


if __name__ == "__main__":
  main()
