"""A tiny SpanBERT (L2 H64 A2, V4096) for tests and quick experiments: no published model.

SpanBERT's recipe (recipes.spanbert_config) cut by recipes.tiny to 300 steps of 32 x 64 tokens, lr 1e-3.
"""

from bert_jax import recipes


def get_config():
  return recipes.tiny(recipes.spanbert_config())
