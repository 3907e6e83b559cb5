"""A tiny TinyBERT (L1 H64 A2, V4096) for tests and quick experiments: no published model.

Sized to be distilled from the demo's BERT (configs/demo.py: L2 H128 A2; its fit_dense projects 64 -> 128, and its
one layer learns the teacher's second) on the demo corpus: --config.objective.teacher=runs/demo
--config.data.tokenizer=runs/demo/tokenizer/spm.model. TinyBERT's general distillation (recipes.tinybert_config)
cut to the demo's run: 1,000 steps of 32 x 64 tokens, lr 1e-3 with 100 warm-up steps, no dropout.
"""

from bert_jax import recipes


def get_config():
  c = recipes.tiny(recipes.tinybert_config(), hidden_size=64, num_layers=1, num_heads=2, intermediate_size=256,
                   fit_size=128, dropout=0.0, attention_dropout=0.0)
  c.train.update(steps=1000, log_every=50)
  c.optimizer.warmup_steps = 100
  c.checkpoint.every = 250
  c.eval.every = 250
  return c
