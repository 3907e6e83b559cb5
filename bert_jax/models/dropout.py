"""Dropout whose random bits fuse into the surrounding computation.

The masks are bit for bit those of `flax.linen.Dropout` (the same key from `make_rng`, the same
`jax.random.bernoulli` draw), so training is unchanged; only the lowering differs. On CPU, JAX lowers
the Threefry-2x32 hash as a rolled loop that writes every intermediate round to memory, which made
dropout's random bits about a tenth of a BERT-base train step. Here the same hash (Salmon et al.,
"Parallel random numbers: as easy as 1, 2, 3", 2011; JAX's partitionable counter layout) is written
out in jnp ops, which XLA fuses into one pass on every backend.
"""

import math

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KEY_PARITY = 0x1BD11BDA
_FLOAT32_ONE_BITS = 0x3F800000
_FLOAT32_MANTISSA_BITS = 23


def _rotate_left(x: jax.Array, d: int) -> jax.Array:
  return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def threefry2x32(key0: jax.Array, key1: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Threefry-2x32 with 20 rounds of the counter words (x0, x1) under the key (key0, key1)."""
  keys = (key0, key1, key0 ^ key1 ^ np.uint32(_KEY_PARITY))
  x0, x1 = x0 + keys[0], x1 + keys[1]
  for block in range(5):
    for rotation in _ROTATIONS[block % 2]:
      x0 = x0 + x1
      x1 = _rotate_left(x1, rotation) ^ x0
    x0 = x0 + keys[(block + 1) % 3]
    x1 = x1 + keys[(block + 2) % 3] + np.uint32(block + 1)
  return x0, x1


def random_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """uint32 bits equal to `jax.random.bits(key, shape)` for a Threefry key (JAX's default, partitionable)."""
  size = math.prod(shape)
  if (str(jax.random.key_impl(key)) != "threefry2x32" or size >= 2 ** 32
      or not jax.config.jax_threefry_partitionable):  # type: ignore[attr-defined]  # jax's Config sets flags dynamically
    return jax.random.bits(key, shape)
  key0, key1 = jax.random.key_data(key)
  strides = [math.prod(shape[d + 1:]) for d in range(len(shape))]
  counter = sum((lax.broadcasted_iota(jnp.uint32, shape, d) * np.uint32(stride)
                 for d, stride in enumerate(strides)), jnp.zeros(shape, jnp.uint32))
  bits0, bits1 = threefry2x32(key0, key1, jnp.zeros(shape, jnp.uint32), counter)
  return bits0 ^ bits1


def keep_mask(key: jax.Array, keep_prob: float, shape: tuple[int, ...]) -> jax.Array:
  """`jax.random.bernoulli(key, keep_prob, shape)`: a float32 uniform from the top 23 bits, below keep_prob."""
  mantissa = random_bits(key, shape) >> np.uint32(32 - _FLOAT32_MANTISSA_BITS)
  uniform = lax.bitcast_convert_type(mantissa | np.uint32(_FLOAT32_ONE_BITS), jnp.float32) - np.float32(1.0)
  return uniform < np.float32(keep_prob)


class Dropout(nn.Module):
  """`nn.Dropout` without broadcast dimensions: zeroes each element with probability `rate` and scales the rest
  by 1 / (1 - rate)."""
  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    keep_prob = 1.0 - self.rate
    mask = keep_mask(self.make_rng("dropout"), keep_prob, x.shape)
    return lax.select(mask, x / keep_prob, jnp.zeros_like(x))
