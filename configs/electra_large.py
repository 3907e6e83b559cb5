"""ELECTRA-Large (H1024 L24 A16 FFN4096, E = H; generator 1/4: H256 A4 FFN1024): 354,655,291 parameters, the
discriminator's encoder 334,092,288 (HF ElectraModel).

Sizes and recipe: Clark et al. 2020, Table 6, and the release's configure_pretraining.py (its settings for
larger models): seq 512, 25% masked, lr 2e-4, batch 2048, 400k steps (the released ELECTRA-Large ran 1.75M),
10k warm-up. Differs from the original (configs/README.md, "Recipes", notes 2, 12 and 13): one segment per example,
masks drawn without replacement.
"""

from bert_jax import recipes


def get_config():
  c = recipes.electra_config(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096,
                              embedding_size=0)
  c.data.seq_len = 512
  c.objective.update(mask_rate=0.25, max_predictions=130)  # int((0.25 + 0.005) * 512)
  c.train.update(steps=400_000, batch_size=2048)
  c.optimizer.learning_rate = 2e-4
  return c
