"""T5 v1.1-small (d512 ff1024 L8+8 A6, gated GELU, untied LM head, no dropout): 76,961,152 parameters."""

from bert_jax import defaults

V1_1 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout=0.0)


def get_config():
  return defaults.t5_config(d_model=512, d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6, **V1_1)
