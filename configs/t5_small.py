"""T5-small v1.0 (d512 ff2048 L6+6 A8, ReLU, tied embeddings): 60,506,624 parameters."""

from bert_jax import defaults


def get_config():
  return defaults.t5_config()
