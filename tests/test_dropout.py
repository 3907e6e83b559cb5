"""The fused dropout draws exactly the bits and masks of jax.random and flax's nn.Dropout."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax.models import dropout

SHAPES = [(1,), (7,), (3, 5), (2, 3, 4, 5), (2, 12, 16, 16)]


@pytest.mark.parametrize("shape", SHAPES)
def test_random_bits_equal_jax_random_bits(shape):
  for seed in (0, 1, 2 ** 31 + 5):
    key = jax.random.fold_in(jax.random.key(seed), 17)
    expected = jax.random.bits(key, shape)
    np.testing.assert_array_equal(dropout.random_bits(key, shape), expected)
    np.testing.assert_array_equal(jax.jit(dropout.random_bits, static_argnums=1)(key, shape), expected)


def test_keep_mask_equals_bernoulli():
  key = jax.random.key(4)
  for keep_prob in (0.9, 0.5, 0.01):
    np.testing.assert_array_equal(dropout.keep_mask(key, keep_prob, (64, 64)),
                                  jax.random.bernoulli(key, keep_prob, (64, 64)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_equals_flax_dropout(dtype, rate):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 12, 16, 16)), dtype)
  for seed in range(3):
    rngs = {"dropout": jax.random.key(seed)}
    expected = nn.Dropout(rate).apply({}, x, deterministic=False, rngs=rngs)
    got = jax.jit(lambda x: dropout.Dropout(rate).apply({}, x, deterministic=False, rngs=rngs))(x)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
  kept = float(jnp.mean(got != 0))
  assert abs(kept - (1 - rate)) < 0.02


def test_dropout_gradient_is_the_mask_over_keep_prob():
  x = jnp.ones((32, 32))
  rngs = {"dropout": jax.random.key(1)}
  apply = lambda x: dropout.Dropout(0.25).apply({}, x, deterministic=False, rngs=rngs)
  grad = jax.grad(lambda x: jnp.sum(apply(x)))(x)
  np.testing.assert_array_equal(grad, (apply(x) != 0) / 0.75)


def test_deterministic_and_rate_zero_are_identity():
  x = jnp.arange(6.0)
  assert dropout.Dropout(0.3).apply({}, x, deterministic=True) is x
  assert dropout.Dropout(0.0).apply({}, x, deterministic=False) is x


def test_other_key_implementations_fall_back_to_jax_random():
  key = jax.random.key(0, impl="rbg")
  np.testing.assert_array_equal(dropout.random_bits(key, (5, 7)), jax.random.bits(key, (5, 7)))
