"""ALBERT-xxlarge v2 (E128 H4096 L12 A64): 223,158,450 parameters.

Sizes: Lan et al. 2020, Table 1. Recipe: ALBERT v2's, recipes.albert_config; its differences from the
original are albert_base's (configs/README.md, "Recipes", notes 2-4 and 7).
"""

from bert_jax import recipes


def get_config():
  return recipes.albert_config(hidden_size=4096, num_layers=12, num_heads=64, intermediate_size=16384)
