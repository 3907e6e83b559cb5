"""ELECTRA-Small (E128 H256 L12 A4 FFN1024; generator 1/4: H64 A1 FFN256): 14,196,219 parameters, the
discriminator's encoder 13,483,008 (HF ElectraModel).

Sizes: Clark et al. 2020, Table 6 (the electra family's defaults). Recipe: recipes.electra_config, the
release's configure_pretraining.py for model_size small: lr 5e-4, batch 128 x 128, 1M steps, 10k warm-up.
The released ELECTRA-Small (Small++, 4M steps) used a generator as wide as the discriminator
(generator_hidden_size 1.0, the release's README); set --config.model.generator_size=1.0 for that one. Differs
from the original (configs/README.md, "Recipes", notes 2, 12 and 13): one segment per example, masks of exactly
round(15% of the maskable tokens) drawn without replacement.
"""

from bert_jax import recipes


def get_config():
  return recipes.electra_config()
