"""A tiny GPT-2 (L2 H64 A2, V4096, 128 positions) for tests and quick experiments: no published model.

GPT-2's recipe (recipes.gpt2_config) with its byte-level BPE trained on the source, cut by recipes.quick_run to 300
steps of 32 x 64 tokens, lr 1e-3.
"""

from bert_jax import recipes


def get_config():
  c = recipes.gpt2_config(vocab_size=4096, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
                           max_position=128)
  return recipes.quick_run(c, learning_rate=1e-3)
