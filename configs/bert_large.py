"""BERT-large (L24 H1024 A16, V30522): 336,226,108 parameters."""

from bert_jax import defaults


def get_config():
  return defaults.bert_config(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096, scan_layers=True)
