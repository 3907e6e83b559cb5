"""A tiny T5 v1.1 (d64 ff128 L2+2 A4, gated GELU, untied head, V4096) for tests and quick experiments: no
published model. T5's baseline recipe (recipes.t5_config) cut by recipes.quick_run to 300 steps of 32 x 64
input tokens, lr 0.01."""

from bert_jax import recipes


def get_config():
  c = recipes.t5_config(vocab_size=4096, hidden_size=64, head_dim=16, intermediate_size=128, num_layers=2,
                         num_decoder_layers=2, num_heads=4, **recipes.T5_V1_1)
  c.objective.targets_length = 14  # span_corruption.lengths(64, 0.15, 3) -> 70 raw tokens, 14 targets
  return recipes.quick_run(c, learning_rate=0.01)
