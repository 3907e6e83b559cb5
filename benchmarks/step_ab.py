"""Before/after of one performance change in one process:

    python benchmarks/step_ab.py CHANGE [--config bert_base] [--rounds 4] [--batch 8] [--seq 128] [--config.x=y ...]

CHANGE is one of
  kernel-grad  layers.dot_general's gradients in each operand's layout (a kernel's as x^T . dy), against JAX's own
               rule (dy^T . x, then transposed)
  bf16-dots    layers.dot_general's bfloat16 products into float32 on the CPU, against bfloat16 products (which
               XLA:CPU computes in float32); use with --config.model.dtype=bfloat16
  kernel-cast  dense layers' float32 kernels cast inside layers.dot_general (layers.promote_except_kernel), against
               flax's promote_dtype casting them before it; use with --config.model.dtype=bfloat16
  adafactor    train.optimizers.adafactor (moments factored over each kernel's 2-D view, one-pass parameter RMS),
               against optax.adafactor (use a config that trains with Adafactor: t5_base)
  matrix-dots  layers.dot_general's products without batch axes taken as 2-D matrices on the CPU (a kernel's gradient
               contracted over one merged batch x length axis), against the operands' own shapes (XLA transposes
               the activations so that the contracted axes come last)
  recompute    GELU and the normalizations keep only their input for the backward pass (layers.recomputed),
               against the intermediates JAX's autodiff keeps (GELU's erf or tanh terms, LayerNorm's centred and
               normalised input)
  accuracy     objectives.token_scores (a token is correct where its logit is the maximum), against argmax == label

Builds the train step twice (before, then after), alternates their steps so that machine noise falls on both, and
prints each one's median step time and the ratio.
"""

import argparse
import statistics
import time

import flax
import jax
import jax.numpy as jnp
import optax

from bert_jax import config as config_lib
from bert_jax.bench import run as bench
from bert_jax.models import layers
from bert_jax.objectives import token_scores
from bert_jax.train import optimizers
from bert_jax.train.trainer import Trainer

NEW_ADAFACTOR = optimizers.adafactor
NEW_SCORES = token_scores.nll_and_correct


def optax_adafactor(schedule, weight_decay=0.0):
  return optax.adafactor(schedule, weight_decay_rate=weight_decay or None, weight_decay_mask=optimizers.decay_mask)


# The library's functions, and what "before" puts in their place; each is looked up when a step is traced.
CUSTOM_DOT, AS_MATRICES, LOW_PRECISION_ON_CPU = layers._custom_dot, layers._as_matrices, layers._low_precision_on_cpu
RECOMPUTED, RECOMPUTED_MODULE = layers.recomputed, layers.recomputed_module


def low_precision_native(x, y, dimension_numbers, precision, out_dtype):
  """Before bf16-dots: only batched products go through float32; the others are bfloat16 products."""
  if dimension_numbers[1][0]:
    return LOW_PRECISION_ON_CPU(x, y, dimension_numbers, precision, out_dtype)
  return jax.lax.dot_general(x, y, dimension_numbers, precision=precision, preferred_element_type=out_dtype)


def set_kernel_grad(after: bool) -> None:
  layers._custom_dot = CUSTOM_DOT if after else layers._compute_product


def set_kernel_cast(after: bool) -> None:
  promote = layers.promote_except_kernel if after else flax.linen.dtypes.promote_dtype
  layers.KERNEL_PRODUCT = {"dot_general": layers.dot_general, "promote_dtype": promote}  # read when traced


def set_bf16_dots(after: bool) -> None:
  layers._low_precision_on_cpu = LOW_PRECISION_ON_CPU if after else low_precision_native


def set_matrix_dots(after: bool) -> None:
  layers._as_matrices = AS_MATRICES if after else (lambda *args: None)


def set_recompute(after: bool) -> None:
  layers.recomputed = RECOMPUTED if after else (lambda fn: fn)
  layers.recomputed_module = RECOMPUTED_MODULE if after else (lambda module_cls: module_cls)


def set_adafactor(after: bool) -> None:
  optimizers.adafactor = NEW_ADAFACTOR if after else optax_adafactor  # read when the Trainer is built


def argmax_scores(logits, labels):
  return (optax.softmax_cross_entropy_with_integer_labels(logits, labels),
          (jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def set_accuracy(after: bool) -> None:
  token_scores.nll_and_correct = NEW_SCORES if after else argmax_scores  # read when the step is traced


CHANGES = {"kernel-grad": (set_kernel_grad, "JAX's rule (dy^T . x, transposed)", "kernel gradient in kernel layout"),
           "adafactor": (set_adafactor, "optax.adafactor", "factored matrix views, one-pass RMS"),
           "accuracy": (set_accuracy, "argmax == label", "label logit == max"),
           "bf16-dots": (set_bf16_dots, "bfloat16 products", "bfloat16 into float32 products"),
           "kernel-cast": (set_kernel_cast, "kernels cast before the product", "kernels cast inside the product"),
           "matrix-dots": (set_matrix_dots, "products in the operands' shapes", "products of 2-D matrices"),
           "recompute": (set_recompute, "JAX's residuals of GELU and norms", "GELU and norms keep their input")}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("change", choices=sorted(CHANGES))
  parser.add_argument("--config", default="bert_base")
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=128)
  args, overrides = parser.parse_known_args()
  overrides = [o.removeprefix("--config.") for o in overrides]
  config = config_lib.load_config(args.config, overrides)
  overrides += bench.bench_overrides(config, args.batch, args.seq, overrides) + ["data.source=synthetic"]
  switch, *labels = CHANGES[args.change]
  runs = {}
  for after in (False, True):
    switch(after)
    trainer = Trainer(config_lib.load_config(args.config, overrides))
    state, batch = trainer.init_state(), next(trainer.batches("", 0))
    with trainer.context():
      state = jax.block_until_ready(trainer.train_step(state, batch)[0])
    runs[after] = {"trainer": trainer, "state": state, "batch": batch, "times": []}
  for _ in range(args.rounds):
    for run in runs.values():
      with run["trainer"].context():
        start = time.perf_counter()
        run["state"] = jax.block_until_ready(run["trainer"].train_step(run["state"], run["batch"])[0])
        run["times"].append(time.perf_counter() - start)
  medians = {after: statistics.median(run["times"]) for after, run in runs.items()}
  for after, run in runs.items():
    print(f"{args.config} {labels[after]:40s} median {medians[after]:.3f} s  steps "
          + ", ".join(f"{t:.2f}" for t in run["times"]))
  print(f"speed-up {medians[False] / medians[True]:.3f}x")


if __name__ == "__main__":
  main()
