"""ALBERT-base v2 (E128 H768 L12, all layers shared): 11,813,810 parameters.

Sizes: Lan et al. 2020, Table 1 (set by recipes.albert_config). Recipe: ALBERT v2's, recipes.albert_config.
Differs from the original (configs/README.md, "Recipes", notes 2-4 and 7): linear decay from the full peak; masks
drawn anew at every read instead of fixed when the data is written; a random B from the previous document
in the shuffled stream; n-grams kept inside a segment.
"""

from bert_jax import recipes


def get_config():
  return recipes.albert_config()
