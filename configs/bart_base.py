"""BART-base (d768 ff3072 L6+6 A12, V50265, 1024 positions): 139,420,416 parameters as transformers counts
BartForConditionalGeneration.

Sizes: the released bart.base (fairseq's bart_base architecture). Recipe: recipes.bart_config, the large model's (the
paper gives none for base).
"""

from bert_jax import recipes


def get_config():
  return recipes.bart_config(hidden_size=768, num_layers=6, num_decoder_layers=6, num_heads=12,
                              num_decoder_heads=12, intermediate_size=3072, decoder_intermediate_size=3072)
