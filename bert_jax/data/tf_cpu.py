"""TensorFlow for the input pipeline only: it must never claim an accelerator that JAX uses."""

import tensorflow as tf

try:
  tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # devices were already initialised by an earlier import; nothing left to hide
  pass

__all__ = ["tf"]
