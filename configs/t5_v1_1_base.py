"""T5 v1.1-base (d768 ff2048 L12+12 A12, gated GELU, untied LM head, no dropout): 247,577,856 parameters."""

from bert_jax import defaults

V1_1 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout=0.0)


def get_config():
  return defaults.t5_config(d_model=768, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12, **V1_1)
