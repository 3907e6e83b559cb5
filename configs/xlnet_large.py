"""XLNet-large (L24 H1024 A16, V32000): 360,300,800 parameters (360,268,800 without the LM bias).

Sizes: Yang et al. 2019, section 3.1 (BERT-large's). Recipe: XLNet-Large's, recipes.xlnet_config; its
differences from the original are xlnet_base's (configs/README.md, "Recipes", notes 9-10).
"""

from bert_jax import recipes


def get_config():
  return recipes.xlnet_config(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096)
