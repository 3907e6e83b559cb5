"""DistilBERT-base (L6 H768 A12, V30522, no token types, no pooler): distilbert-base-uncased.

Recipe: DistilBERT's (Sanh et al. 2019), recipes.distilbert_config: distillation from a frozen BERT teacher
(--config.objective.teacher=W, a run's workdir, a step of it or a `convert --from-hf` output) with soft-target
cross-entropy at temperature 2, MLM and cosine losses weighted 5, 2 and 1; the student starts from teacher layers
0, 2, 4, 7, 9 and 11. Without a teacher it trains on the MLM loss alone. Differs from the original
(configs/README.md): masking is uniform over the tokens (the release favours rare tokens, mlm_smoothing 0.7), the
teacher's token type 0 is added into the student's position embeddings at initialization (the release drops it),
and the step count is assumed.
"""

from bert_jax import recipes


def get_config():
  return recipes.distilbert_config()
