"""A tiny ELECTRA (E32 H64 L2 A2; generator 1/2: H32 A1) for tests and quick experiments: no published model.

ELECTRA's recipe (recipes.electra_config) cut by recipes.quick_run to 300 steps of 32 x 64 tokens, lr 1e-3.

`configs/electra_tiny.py:demo`: a discriminator that beats calling every held-out token original on the demo
corpus. ELECTRA-Large's masking rate (the release's mask_prob 0.25) and 100 steps, evaluated every 25 on 8 held-out
batches. The jointly trained generator is still weak that early (it often samples pieces rare in their context)
and the discriminator learns to find its samples; trained longer, the generator nears the corpus's unigram
distribution and this discriminator, too small to learn context from 86k tokens, falls back to the baseline
(configs/README.md, "Recipes", note 13).
"""

from bert_jax import recipes
from bert_jax.errors import UserError


def get_config(variant: str = ""):
  c = recipes.electra_config(vocab_size=4096, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
                              embedding_size=32, max_position=128, generator_size=0.5)
  c.objective.max_predictions = 10
  c = recipes.quick_run(c, learning_rate=1e-3)
  if variant == "demo":
    c.objective.update(mask_rate=0.25, max_predictions=16)  # at most int((rate + 0.005) x 64), as the release
    c.train.update(steps=100, log_every=25)
    c.eval.update(every=25, batches=8)
  elif variant:
    raise UserError(f"electra_tiny has one variant, demo (configs/electra_tiny.py:demo); got {variant!r}")
  return c
