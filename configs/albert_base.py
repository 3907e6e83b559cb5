"""ALBERT-base v2 (E128 H768 L12, all layers shared): 11,813,810 parameters."""

from bert_jax import defaults


def get_config():
  return defaults.albert_config()
