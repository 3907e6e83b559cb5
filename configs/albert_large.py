"""ALBERT-large v2 (E128 H1024 L24 A16): 17,847,474 parameters."""

from bert_jax import defaults


def get_config():
  return defaults.albert_config(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096)
