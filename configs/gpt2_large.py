"""GPT-2 large (L36 H1280 A20, V50257, 1024 positions): 774,030,080 parameters.

Sizes: Radford et al. 2019, Table 2. Recipe: recipes.gpt2_config (the assumptions its docstring names).
"""

from bert_jax import recipes


def get_config():
  return recipes.gpt2_config(hidden_size=1280, num_layers=36, num_heads=20, intermediate_size=5120)
