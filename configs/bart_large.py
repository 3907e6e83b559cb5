"""BART-large (d1024 ff4096 L12+12 A16, V50265, 1024 positions): 406,291,456 parameters as transformers counts
BartForConditionalGeneration.

Sizes: Lewis et al. 2020, section 5.1, and the released bart.large. Recipe: recipes.bart_config.
"""

from bert_jax import recipes


def get_config():
  return recipes.bart_config()
