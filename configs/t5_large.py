"""T5-large v1.0 (d1024 ff4096 L24+24 A16, ReLU, tied embeddings): 737,668,096 parameters.

Sizes: Raffel et al. 2020, section 3.7. Recipe: the paper's baseline, recipes.t5_config, as t5_small says.
"""

from bert_jax import recipes


def get_config():
  return recipes.t5_config(hidden_size=1024, intermediate_size=4096, num_layers=24, num_decoder_layers=24, num_heads=16)
