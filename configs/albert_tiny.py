"""A tiny ALBERT (E32 H64 L4 A2 in two groups, V4096) for tests and quick experiments: no published model.

ALBERT v2's recipe (recipes.albert_config) cut by recipes.tiny to 300 steps of 32 x 64 tokens, lr 1e-3.
"""

from bert_jax import recipes


def get_config():
  return recipes.tiny(recipes.albert_config(), embedding_size=32, num_layers=4, num_hidden_groups=2)
