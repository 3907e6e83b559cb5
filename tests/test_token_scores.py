"""The shared token cross-entropy and correctness: optax's loss, argmax's answer without argmax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bert_jax.objectives import token_scores


def test_nll_is_optaxs_and_correct_is_argmax_equals_label():
  logits = jax.random.normal(jax.random.key(0), (4, 7, 50))
  labels = jax.random.randint(jax.random.key(1), (4, 7), 0, 50)
  labels = labels.at[0].set(jnp.argmax(logits[0], -1))  # some right, most wrong
  nll, correct = token_scores.nll_and_correct(logits, labels)
  np.testing.assert_allclose(nll, optax.softmax_cross_entropy_with_integer_labels(logits, labels), rtol=1e-6)
  np.testing.assert_array_equal(correct, (jnp.argmax(logits, -1) == labels).astype(jnp.float32))
  assert 7 <= float(correct.sum()) < 28


def test_a_tie_for_the_top_counts_as_correct():
  logits = jnp.array([[1.0, 3.0, 3.0, 0.0]])
  _, correct = token_scores.nll_and_correct(logits, jnp.array([2]))
  assert float(correct[0]) == 1.0
