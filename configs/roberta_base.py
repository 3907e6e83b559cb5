"""RoBERTa-base (L12 H768 A12, V50265): 124,697,433 parameters.

Sizes: BERT-base with the fairseq release's vocabulary and conventions. Recipe: RoBERTa's (Liu et al. 2019,
Table 9), recipes.roberta_config. Differs from the original (configs/README.md, "Recipes", note 5): weight decay
skips LayerNorm and biases, as BERT's does, where fairseq decays every weight; at most 80 predictions a
sequence, never reached at 512 tokens.
"""

from bert_jax import recipes


def get_config():
  return recipes.roberta_config()
