"""T5-small v1.0 (d512 ff2048 L6+6 A8, ReLU, tied embeddings): 60,506,624 parameters.

Sizes: Raffel et al. 2020, section 3.7 (the t5 family's defaults). Recipe: the paper's baseline,
recipes.t5_config (configs/README.md, "Recipes", note 11), with nothing changed; the released checkpoints trained
longer on a multi-task mixture (note 11 gives the overrides for that scale).
"""

from bert_jax import recipes


def get_config():
  return recipes.t5_config()
