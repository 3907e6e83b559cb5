"""T5-base v1.0 (d768 ff3072 L12+12 A12, ReLU, tied embeddings): 222,903,552 parameters.

Sizes: Raffel et al. 2020, section 3.7. Recipe: the paper's baseline, recipes.t5_config, as t5_small says.
"""

from bert_jax import recipes


def get_config():
  return recipes.t5_config(hidden_size=768, intermediate_size=3072, num_layers=12, num_decoder_layers=12, num_heads=12)
