"""BERT-large (L24 H1024 A16, V30522): 336,226,108 parameters.

Sizes: Devlin et al. 2019, section 3. Recipe: BERT's, recipes.bert_config; its differences from the
original are bert_base's (configs/README.md, "Recipes", notes 1-4). Scanned layers: compile time flat in depth, the
same numbers.
"""

from bert_jax import recipes


def get_config():
  return recipes.bert_config(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096, scan_layers=True)
