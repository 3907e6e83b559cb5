"""ELECTRA-Base (H768 L12 A12 FFN3072, E = H; generator 1/3: H256 A4 FFN1024): 119,386,427 parameters, the
discriminator's encoder 108,891,648 (HF ElectraModel).

Sizes and recipe: Clark et al. 2020, Table 6, and the release's configure_pretraining.py (its settings for
larger models): seq 512, lr 2e-4, batch 256, 766k steps, 10k warm-up, 15% masked. Differs from the original
(configs/README.md, "Recipes", notes 2, 12 and 13): one segment per example, masks drawn without replacement.
"""

from bert_jax import recipes


def get_config():
  c = recipes.electra_config(hidden_size=768, num_heads=12, intermediate_size=3072, embedding_size=0,
                              generator_size=1 / 3)
  c.data.seq_len = 512
  c.objective.max_predictions = 79  # int((0.15 + 0.005) * 512)
  c.train.update(steps=766_000, batch_size=256)
  c.optimizer.learning_rate = 2e-4
  return c
