"""Square matmul rate on this machine: XLA and PyTorch, float32 and bfloat16, in alternating rounds.

    python benchmarks/matmul_dtypes.py [N]      # N x N x N products (default 2048); needs the [bench] extra

"xla bfloat16" is jnp's bfloat16 product (a bfloat16 result, which XLA:CPU computes in float32); "xla bf16->f32"
is the models' (layers.dot_general: bfloat16 operands into a float32 product, native where the CPU has
AVX512-BF16 or AMX).

Prints the median GFLOP/s of each over the rounds, and each round's figure, so that a background job that slows
one round shows.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from bert_jax.models import layers

ROUNDS, REPEATS = 4, 5


def rate(matmul, a) -> float:
  matmul(a)  # compile / warm up
  start = time.perf_counter()
  for _ in range(REPEATS):
    matmul(a)
  return 2 * a.shape[0] ** 3 * REPEATS / (time.perf_counter() - start)


def xla(n: int, dtype, product=lambda x: x @ x) -> float:
  square = jax.jit(product)
  x = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
  return rate(lambda x: square(x).block_until_ready(), x)


def pytorch(n: int, dtype) -> float:
  return rate(lambda x: x @ x, torch.randn(n, n, dtype=dtype))


def main(n: int) -> None:
  into_float32 = lambda x: layers.dot_general(x, x, (((1,), (0,)), ((), ())))  # the models' product
  cases = {"xla float32": lambda: xla(n, jnp.float32), "xla bfloat16": lambda: xla(n, jnp.bfloat16),
           "xla bf16->f32": lambda: xla(n, jnp.bfloat16, into_float32),
           "torch float32": lambda: pytorch(n, torch.float32), "torch bfloat16": lambda: pytorch(n, torch.bfloat16)}
  results = {name: [] for name in cases}
  for _ in range(ROUNDS):
    for name, measure in cases.items():
      results[name].append(measure() / 1e9)
  print(f"{n} x {n} matmul, {ROUNDS} alternating rounds of {REPEATS}")
  for name, rounds in results.items():
    print(f"{name:16s} {np.median(rounds):7.1f} GFLOP/s   rounds: {', '.join(f'{r:.1f}' for r in rounds)}")


if __name__ == "__main__":
  main(int(sys.argv[1]) if len(sys.argv) > 1 else 2048)
