"""RoBERTa-base (L12 H768 A12, V50265): 124,697,433 parameters."""

from bert_jax import defaults


def get_config():
  return defaults.roberta_config()
