"""GPT-2 small (L12 H768 A12, V50257, 1024 positions): 124,439,808 parameters (the tied output layer counted once).

Sizes: Radford et al. 2019, Table 2 (the gpt2 family's defaults). Recipe: recipes.gpt2_config, what the GPT-2 and
GPT papers state plus the assumptions its docstring names (the schedule, b2, clipping and the number of steps).
"""

from bert_jax import recipes


def get_config():
  return recipes.gpt2_config()
