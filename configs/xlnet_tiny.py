"""A tiny XLNet (L2 H64 A2, V4096, 10 predicted tokens) for tests and quick experiments: no published model.

XLNet-Large's recipe (recipes.xlnet_config) cut by recipes.quick_run to 300 steps of 32 x 64 tokens, lr 1e-3.
"""

from bert_jax import recipes


def get_config():
  c = recipes.xlnet_config(vocab_size=4096, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
                            mem_len=48, reuse_len=32)
  c.objective.update(num_predict=10, perm_size=16)
  return recipes.quick_run(c, learning_rate=1e-3)
