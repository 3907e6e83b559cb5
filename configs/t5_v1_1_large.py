"""T5 v1.1-large (d1024 ff2816 L24+24 A16, gated GELU, untied LM head, no dropout): 783,150,080 parameters."""

from bert_jax import defaults

V1_1 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout=0.0)


def get_config():
  return defaults.t5_config(d_model=1024, d_ff=2816, num_layers=24, num_decoder_layers=24, num_heads=16, **V1_1)
