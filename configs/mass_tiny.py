"""A tiny MASS (BART's layers at bart_tiny's size: d64 ff128 L2+2 A4, V4096, 64 positions) for tests and quick
experiments: no published model. MASS's recipe (recipes.mass_config) cut by recipes.quick_run to 300 steps of 32
sentences of up to 62 tokens, lr 1e-3, gradients clipped at 1.0, with the default SentencePiece tokenizer ([PAD] 0,
</s> 1, [CLS] 3: the <s> before every sentence).

`configs/mass_tiny.py:t5`: the same on a tiny T5 v1.1 (t5_tiny's model: relative positions, so the decoder's places
are distances only).
"""

from bert_jax import models, recipes
from bert_jax.errors import UserError


def get_config(variant: str = ""):
  c = recipes.mass_config(vocab_size=4096, hidden_size=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                           num_decoder_heads=4, intermediate_size=128, decoder_intermediate_size=128,
                           max_position=64)
  if variant == "t5":
    c.model = models.default_config("t5", vocab_size=4096, hidden_size=64, head_dim=16, intermediate_size=128,
                                    num_layers=2, num_decoder_layers=2, num_heads=4, **recipes.T5_V1_1)
  elif variant:
    raise UserError(f"mass_tiny has one variant, t5 (configs/mass_tiny.py:t5); got {variant!r}")
  c.data.tokenizer_type = "unigram"
  c.train.clip_norm = 1.0
  return recipes.quick_run(c, learning_rate=1e-3)
