"""A tiny ELECTRA (E32 H64 L2 A2; generator 1/2: H32 A1) for tests and quick experiments: no published model.

ELECTRA's recipe (defaults.electra_config) cut by defaults.quick_run to 300 steps of 32 x 64 tokens, lr 1e-3.
"""

from bert_jax import defaults


def get_config():
  c = defaults.electra_config(vocab_size=4096, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
                              embedding_size=32, max_position=128, generator_size=0.5)
  c.objective.max_predictions = 10
  return defaults.quick_run(c, learning_rate=1e-3)
