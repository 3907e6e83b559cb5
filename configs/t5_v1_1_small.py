"""T5 v1.1-small (d512 ff1024 L8+8 A6, gated GELU, untied LM head, no dropout): 76,961,152 parameters.

Sizes and v1.1's changes (recipes.T5_V1_1): the t5 repository's released_checkpoints.md. Recipe: the
paper's baseline, recipes.t5_config, as t5_small says (configs/README.md, "Recipes", note 11: the released v1.1
checkpoints trained longer, on C4 alone).
"""

from bert_jax import recipes


def get_config():
  return recipes.t5_config(hidden_size=512, intermediate_size=1024, num_layers=8, num_decoder_layers=8, num_heads=6,
                            **recipes.T5_V1_1)
