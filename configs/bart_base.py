"""BART-base (d768 ff3072 L6+6 A12, V50265, 1024 positions): 139,420,416 parameters as transformers counts
BartForConditionalGeneration.

Sizes: the released bart.base (fairseq's bart_base architecture). Recipe: defaults.bart_config, the large model's (the
paper gives none for base).
"""

from bert_jax import defaults


def get_config():
  return defaults.bart_config(d_model=768, num_layers=6, num_decoder_layers=6, encoder_attention_heads=12,
                              decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072)
