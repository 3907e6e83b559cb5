"""T5 v1.1-large (d1024 ff2816 L24+24 A16, gated GELU, untied LM head, no dropout): 783,150,080 parameters.

Sizes: the t5 repository's released_checkpoints.md. Recipe: recipes.t5_config with recipes.T5_V1_1, as
t5_v1_1_small says.
"""

from bert_jax import recipes


def get_config():
  return recipes.t5_config(hidden_size=1024, intermediate_size=2816, num_layers=24, num_decoder_layers=24, num_heads=16,
                            **recipes.T5_V1_1)
