"""SpanBERT-base (L12 H768 A12, V28996, no pooler) with its span-boundary head.

Sizes: BERT-base with the release's cased WordPiece vocabulary; the SBO head as the release's (positions of 200
wide for up to 15 targets a span). Recipe: SpanBERT's (Joshi et al. 2020; facebookresearch/SpanBERT's pretraining
command), recipes.spanbert_config: batch 256 x 512, 2.4M steps, AdamW lr 1e-4, eps 1e-8, 10k warm-up. The paper
trains its base model with the large model's recipe. Differs from the original (configs/README.md, "Recipes", note 14):
the word the masking budget ends in is masked whole (the release stops mid-word), random replacements are uniform over
the vocabulary, the SBO
loss divides by its targets (not targets + 1), weight decay skips LayerNorm and biases, and a sentence that
overflows a sequence is cut as BERT's data is rather than moved to the next one.
"""

from bert_jax import recipes


def get_config():
  return recipes.spanbert_config()
