"""A tiny T5 v1.1 (d64 ff128 L2+2 A4, gated GELU, untied head) for tests and quick experiments."""

from bert_jax import defaults


def get_config():
  c = defaults.t5_config(vocab_size=4096, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
                         num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout=0.0)
  c.data.seq_len = 64
  c.objective.targets_length = 14  # span_corruption.lengths(64, 0.15, 3) -> 70 raw tokens, 14 targets
  c.train.update(steps=300, batch_size=32, log_every=25)
  c.optimizer.update(learning_rate=0.01, warmup_steps=30)
  c.checkpoint.every = 100
  c.eval.update(batches=4, batch_size=32)
  return c
