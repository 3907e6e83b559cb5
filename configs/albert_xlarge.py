"""ALBERT-xlarge v2 (E128 H2048 L24 A16): 59,021,490 parameters.

Sizes: Lan et al. 2020, Table 1. Recipe: ALBERT v2's, recipes.albert_config; its differences from the
original are albert_base's (configs/README.md, "Recipes", notes 2-4 and 7).
"""

from bert_jax import recipes


def get_config():
  return recipes.albert_config(hidden_size=2048, num_layers=24, num_heads=16, intermediate_size=8192)
