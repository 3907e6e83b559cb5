"""XLNet-base (L12 H768 A12, V32000): 116,750,336 parameters (116,718,336 without the LM bias)."""

from bert_jax import defaults


def get_config():
  return defaults.xlnet_config()
