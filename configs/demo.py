"""The README's first command: a small BERT (L2 H128 A2, V4096) trained on the built-in demo corpus on a
laptop CPU, evaluated every 250 steps. No published model: BERT's recipe cut by recipes.tiny, wider, without
dropout and with 1000 steps."""

from bert_jax import recipes


def get_config():
  c = recipes.tiny(recipes.bert_config(), hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512)
  c.model.update(dropout=0.0, attention_dropout=0.0)
  c.train.update(steps=1000, batch_size=32, log_every=50)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=100)
  c.checkpoint.every = 250
  c.eval.every = 250
  return c
