"""A tiny ERNIE (L2 H64 A2, V4096) for tests and quick experiments: no published model.

ERNIE's recipe (recipes.ernie_config) cut by recipes.tiny to 300 steps of 32 x 64 tokens, lr 1e-3, its three
masking stages 100 steps each. A character tokenizer's vocabulary is the corpus' characters: set model.vocab_size to
the size `bert-jax tokenizer` prints (README, "Chinese: characters and whole words").
"""

from bert_jax import recipes


def get_config():
  c = recipes.tiny(recipes.ernie_config())
  c.objective.stages = ((100, "piece"), (100, "phrase"), (100, "entity"))
  return c
