"""A tiny T5 v1.1 (d64 ff128 L2+2 A4, gated GELU, untied head, V4096) for tests and quick experiments: no
published model. T5's baseline recipe (defaults.t5_config) cut by defaults.quick_run to 300 steps of 32 x 64
input tokens, lr 0.01."""

from bert_jax import defaults


def get_config():
  c = defaults.t5_config(vocab_size=4096, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
                         num_heads=4, **defaults.T5_V1_1)
  c.objective.targets_length = 14  # span_corruption.lengths(64, 0.15, 3) -> 70 raw tokens, 14 targets
  return defaults.quick_run(c, learning_rate=0.01)
