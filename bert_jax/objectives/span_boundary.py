"""SpanBERT's objective (Joshi et al. 2020): geometric span masking of whole words, masked LM + span-boundary
objective (SBO), one contiguous segment per sequence, no NSP.

Features of one example (L = data.seq_len, P = objective.max_predictions):
  input_ids, token_type_ids, attention_mask [L] int32; masked_positions, masked_ids [P] int32 and
  masked_weights [P] float32 as in masked_lm; and for each of the P targets the SBO's inputs: sbo_left and
  sbo_right [P] int32 (the positions just outside the target's span), sbo_relative [P] int32 (the target's
  position within its span, 0 for the first token) and sbo_weights [P] float32 (1 = an SBO target).

Sequences: [CLS] text [SEP] of up to L tokens, whole sentences of one document (segments.segment_pairs with no
second segment and no short sequences: the release's --short-seq-prob 0.0 --no-nsp).

Masking follows the release's PairWithSpanMaskingScheme (pretraining/fairseq/data/masking.py) with
--geometric-p 0.2 --span-lower 1 --span-upper 10 --replacement-method span --endpoints external: the budget is
ceil(mask_rate x the sequence's tokens); until it is spent, a span length n in words is drawn from the
geometric distribution p(1-p)^(n-1) clipped to 1..max_span (renormalized: mean 3.8 words at p = 0.2), an anchor
token uniformly among the tokens not yet masked, and the span covers the anchor's whole word and the n - 1
words after it (running through words masked before and stopping at the end of the text). Overlapping and
adjacent spans then merge into one; each merged span is replaced as a whole: all [MASK] (80%), all random
tokens (10%) or left as is (10%). A span's targets are SBO targets when neither boundary is [CLS] or [SEP]
and they lie among its first sbo_max_targets tokens (the release's --max-pair-targets 15).

Where ours differs: the release stops a span mid-word when the budget runs out; ours completes that word (as
long as the sequence's masked tokens stay within max_predictions), so every word is masked whole or not at all
and a sequence can mask up to a word's pieces more than the budget. The release draws random replacements from the corpus's token distribution; ours uniformly from the ordinary
vocabulary, as BERT does. The release divides the SBO loss by the number of targets plus one; ours by the
number of targets.
"""

from typing import Any

import jax.numpy as jnp
import numpy as np

from bert_jax import models
from bert_jax.errors import UserError
from bert_jax.objectives import summarize_tokens, token_scores
from bert_jax.objectives.masked_lm import MASKING_GROUP

SBO_FEATURES = ("sbo_left", "sbo_right", "sbo_relative")


class SpanBoundary:
  FAMILIES = ("spanbert",)

  def __init__(self, config: Any):
    self.config = config
    self.seq_len = config.data.seq_len
    self.max_predictions = config.objective.max_predictions
    self.validate()

  def validate(self) -> None:
    o, model = self.config.objective, self.config.model
    if not 0.0 < o.mask_rate < 1.0:
      raise UserError(f"objective.mask_rate must be in (0, 1), got {o.mask_rate}")
    if not 0 < o.max_predictions <= self.seq_len:
      raise UserError(f"objective.max_predictions must be in [1, data.seq_len={self.seq_len}], got {o.max_predictions}")
    if not 0.0 < o.geometric_p <= 1.0 or o.max_span < 1:
      raise UserError(f"objective.geometric_p must be in (0, 1] and objective.max_span >= 1, got {o.geometric_p} "
                      f"and {o.max_span}")
    if not 0 <= o.mask_token_fraction + o.random_token_fraction <= 1:
      raise UserError("objective.mask_token_fraction + objective.random_token_fraction must be in [0, 1]")
    positions = models.max_sequence_length(model)
    if self.seq_len > positions:
      raise UserError(f"data.seq_len={self.seq_len} is more than the model's {positions} positions; set "
                      f"--config.data.seq_len={positions} or raise model.max_position")

  def feature_spec(self, batch_size: int) -> dict:
    L, P = self.seq_len, self.max_predictions
    spec = {name: ((batch_size, L), np.int32) for name in ("input_ids", "token_type_ids", "attention_mask")}
    spec.update({name: ((batch_size, P), np.int32) for name in ("masked_positions", "masked_ids", *SBO_FEATURES)})
    spec.update({name: ((batch_size, P), np.float32) for name in ("masked_weights", "sbo_weights")})
    return spec

  def synthetic_batch(self, batch_size: int, rng: np.random.Generator) -> dict:
    """Random tokens with the objective's shapes and mask rate, each target a span of its own (benchmarks, plans)."""
    L, P, V = self.seq_len, self.max_predictions, self.config.model.vocab_size
    n_predict = min(P, max(1, round(L * self.config.objective.mask_rate)))
    positions = np.sort(np.stack([rng.choice(np.arange(1, L - 1), P, replace=False) for _ in range(batch_size)]), 1)
    weights = (np.arange(P)[None] < n_predict).astype(np.float32).repeat(batch_size, 0)
    return {"input_ids": rng.integers(5, V, (batch_size, L), dtype=np.int32),
            "token_type_ids": np.zeros((batch_size, L), np.int32),
            "attention_mask": np.ones((batch_size, L), np.int32),
            "masked_positions": positions.astype(np.int32),
            "masked_ids": rng.integers(5, V, (batch_size, P), dtype=np.int32),
            "masked_weights": weights, "sbo_weights": weights,
            "sbo_left": (positions - 1).astype(np.int32), "sbo_right": (positions + 1).astype(np.int32),
            "sbo_relative": np.zeros((batch_size, P), np.int32)}

  def dataset(self, documents, tokenizer, seed: int, train: bool):
    """Unbatched features from a stream of tokenized documents, masked anew wherever a document occurs."""
    from bert_jax.data import segments
    from bert_jax.data.tf_cpu import tf
    from bert_jax.objectives import masking, span_masking

    o = self.config.objective
    ids = segments.SpecialIds(cls=tokenizer.cls_id, sep=tokenizer.sep_id, pad=tokenizer.pad_id)
    sequences = segments.segment_pairs(documents, self.seq_len, "none", 0.0, ids, seed)
    tables = masking.Tables.from_tokenizer(tokenizer)
    names = self.feature_spec(1)

    @tf.autograph.experimental.do_not_convert
    def features(group: dict) -> dict:  # sequences masked together, with the first one's seed
      masked = span_masking.mask_spans(
          group["input_ids"], group["attention_mask"], group["seed"][0], tables, o.mask_rate, self.max_predictions,
          o.geometric_p, o.max_span, self.config.model.sbo_max_targets, o.mask_token_fraction,
          o.random_token_fraction)
      return {name: masked[name] if name in masked else group[name] for name in names}

    groups = sequences.batch(MASKING_GROUP).map(features, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return groups.unbatch()

  def forward(self, model, params, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]:
    outputs = model.apply({"params": params}, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                          batch["masked_positions"], *(batch[name] for name in SBO_FEATURES), rngs=rngs)
    sums, metrics = {}, {}
    for term, weights in (("mlm", "masked_weights"), ("sbo", "sbo_weights")):
      logits_BPV = outputs[f"{term}_logits"].astype(jnp.float32)
      nll_BP, correct_BP = token_scores.nll_and_correct(logits_BPV, batch["masked_ids"])
      sums[term] = jnp.sum(nll_BP * batch[weights])
      metrics[f"{term}_correct"] = jnp.sum(correct_BP * batch[weights])
    return sums, metrics

  def counts(self, batch: dict) -> dict:
    return {"mlm": jnp.sum(batch["masked_weights"]), "sbo": jnp.sum(batch["sbo_weights"])}

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    return {**summarize_tokens("mlm", sums, metrics, counts), **summarize_tokens("sbo", sums, metrics, counts)}
