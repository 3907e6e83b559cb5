"""MASS as the paper pretrains it for unsupervised NMT (d1024 ff4096 L6+6 A8, GELU, V60000, 512 positions), on BART's
layers (no output bias, no language embeddings): 238,854,144 parameters.

Sizes and recipe: recipes.mass_config (section 4.1 of the paper, the release's pretraining command).
"""

from bert_jax import recipes


def get_config():
  return recipes.mass_config()
