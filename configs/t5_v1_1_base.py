"""T5 v1.1-base (d768 ff2048 L12+12 A12, gated GELU, untied LM head, no dropout): 247,577,856 parameters.

Sizes: the t5 repository's released_checkpoints.md. Recipe: defaults.t5_config with defaults.T5_V1_1, as
t5_v1_1_small says.
"""

from bert_jax import defaults


def get_config():
  return defaults.t5_config(d_model=768, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12,
                            **defaults.T5_V1_1)
