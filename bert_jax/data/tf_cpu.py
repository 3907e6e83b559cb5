"""TensorFlow for the input pipeline only: it must never claim an accelerator that JAX uses."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # quiet C++ start-up logs
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # tf.data needs no oneDNN kernels (and logs their use)

import tensorflow as tf  # noqa: E402

try:
  tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # devices were already initialised by an earlier import; nothing left to hide
  pass

__all__ = ["tf"]
