"""A tiny UniLM (L2 H64 A2, V4096, six token types) for tests and quick experiments: no published model.

UniLM's recipe (recipes.unilm_config) cut by recipes.tiny to 300 steps of 32 x 64 tokens, lr 1e-3.
"""

from bert_jax import recipes


def get_config():
  return recipes.tiny(recipes.unilm_config())
