"""ALBERT-xxlarge v2 (E128 H4096 L12 A64): 223,158,450 parameters."""

from bert_jax import defaults


def get_config():
  return defaults.albert_config(hidden_size=4096, num_layers=12, num_heads=64, intermediate_size=16384)
