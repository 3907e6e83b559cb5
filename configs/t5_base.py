"""T5-base v1.0 (d768 ff3072 L12+12 A12, ReLU, tied embeddings): 222,903,552 parameters.

Sizes: Raffel et al. 2020, section 3.7. Recipe: the paper's baseline, defaults.t5_config, as t5_small says.
"""

from bert_jax import defaults


def get_config():
  return defaults.t5_config(d_model=768, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12)
