"""BERT-base (L12 H768 A12, V30522): 110,106,428 parameters.

Sizes: Devlin et al. 2019, section 3 (the bert family's defaults). Recipe: BERT's, recipes.bert_config.
Differs from the original (configs/README.md, "Recipes", notes 1-4): 128 tokens for all 1M steps, where the original
ran its last 10% at 512; linear decay from the full peak; masks drawn anew at every read instead of fixed
when the data is written; a random B from the previous document in the shuffled stream.
"""

from bert_jax import recipes


def get_config():
  return recipes.bert_config()
