"""A tiny XLNet (L2 H64, seq 64, 10 predicted tokens) for tests and quick experiments."""

from bert_jax import defaults


def get_config():
  c = defaults.xlnet_config(vocab_size=4096, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
                            mem_len=0, reuse_len=32)
  c.objective.update(num_predict=10, perm_size=16)
  c.data.seq_len = 64
  c.train.update(steps=300, batch_size=32, log_every=25)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=30)
  c.checkpoint.every = 100
  c.eval.update(batches=4, batch_size=32)
  return c
