"""GPT-2 medium (L24 H1024 A16, V50257, 1024 positions): 354,823,168 parameters.

Sizes: Radford et al. 2019, Table 2. Recipe: recipes.gpt2_config (the assumptions its docstring names).
"""

from bert_jax import recipes


def get_config():
  return recipes.gpt2_config(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096)
