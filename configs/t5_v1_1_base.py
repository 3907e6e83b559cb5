"""T5 v1.1-base (d768 ff2048 L12+12 A12, gated GELU, untied LM head, no dropout): 247,577,856 parameters.

Sizes: the t5 repository's released_checkpoints.md. Recipe: recipes.t5_config with recipes.T5_V1_1, as
t5_v1_1_small says.
"""

from bert_jax import recipes


def get_config():
  return recipes.t5_config(hidden_size=768, intermediate_size=2048, num_layers=12, num_decoder_layers=12, num_heads=12,
                            **recipes.T5_V1_1)
