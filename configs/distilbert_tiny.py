"""A tiny DistilBERT (L1 H128 A2, V4096) for tests and quick experiments: no published model.

Sized to be distilled from the demo's BERT (configs/demo.py: L2 H128 A2) with half its layers, on the demo corpus:
--config.objective.teacher=runs/demo. DistilBERT's recipe (recipes.distilbert_config) cut to the demo's run: 1,000
steps of 32 x 64 tokens, lr 1e-3 with 100 warm-up steps, no dropout, evaluated every 250 steps.
"""

from bert_jax import recipes


def get_config():
  c = recipes.distilbert_config(vocab_size=4096, hidden_size=128, num_layers=1, num_heads=2, intermediate_size=512,
                                max_position=128, dropout=0.0, attention_dropout=0.0)
  c.objective.max_predictions = 10
  c = recipes.quick_run(c, learning_rate=1e-3)
  c.train.update(steps=1000, log_every=50)
  c.optimizer.warmup_steps = 100
  c.checkpoint.every = 250
  c.eval.every = 250
  return c
