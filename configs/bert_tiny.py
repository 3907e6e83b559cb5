"""A tiny BERT (L2 H64) for tests and quick experiments."""

from bert_jax import defaults


def get_config():
  return defaults.tiny(defaults.bert_config())
