"""BERT-base (L12 H768 A12, V30522): 110,106,428 parameters."""

from bert_jax import defaults


def get_config():
  return defaults.bert_config()
