"""SpanBERT-large (L24 H1024 A16, V28996, no pooler) with its span-boundary head.

Sizes: BERT-large with the release's cased WordPiece vocabulary (the release's `cased_bert_pair_large`). Recipe:
SpanBERT's (Joshi et al. 2020; facebookresearch/SpanBERT's pretraining command), recipes.spanbert_config: batch
256 x 512, 2.4M steps, AdamW lr 1e-4, eps 1e-8, 10k warm-up. Differs from the original as spanbert_base does
(configs/README.md, "Recipes", note 14).
"""

from bert_jax import recipes


def get_config():
  return recipes.spanbert_config(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096)
