"""A tiny ALBERT (E32 H64, two groups) for tests and quick experiments."""

from bert_jax import defaults


def get_config():
  return defaults.tiny(defaults.albert_config(), embedding_size=32, num_layers=4, num_hidden_groups=2)
