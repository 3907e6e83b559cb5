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
and a sequence can mask up to a word's pieces more than the budget. The release draws random replacements from the
corpus's token distribution; ours uniformly from the ordinary vocabulary, as BERT does. The release divides the SBO loss
by the number of targets plus one; ours by the number of targets.
"""

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np

from bert_jax.objectives import settings as settings_lib, summarize_tokens, token_scores
from bert_jax.objectives.masked_lm import MASKING_GROUP, Masking
from bert_jax.objectives.protocol import FeatureSpec

SBO_FEATURES = ("sbo_left", "sbo_right", "sbo_relative")


@dataclasses.dataclass(frozen=True)
class SpanBoundarySettings(Masking):
  """config.objective of span_boundary: masked_lm's masking rates with geometric spans of whole words; the
  defaults are SpanBERT's recipe (bert_jax.recipes.spanbert_config)."""
  max_predictions: int = 80  # ceil(0.15 x 510) = 77 at 512 tokens
  geometric_p: float = 0.2  # span length n in words ~ p (1 - p)^(n - 1), clipped to n <= max_span
  max_span: int = 10

  def check(self) -> None:
    super().check()
    settings_lib.check_interval(self, "geometric_p", "(0, 1]")
    settings_lib.check_positive(self, "max_span")


class SpanBoundary:
  FAMILIES: ClassVar[tuple[str, ...] | None] = ("spanbert",)
  SETTINGS: ClassVar[type[SpanBoundarySettings]] = SpanBoundarySettings
  settings: SpanBoundarySettings  # config.objective, read in __init__

  def __init__(self, config: Any):
    self.config = config
    self.settings = settings_lib.from_config(self.SETTINGS, config.objective)
    self.seq_len = config.data.seq_len
    self.max_predictions = self.settings.max_predictions
    self.validate()

  def validate(self) -> None:
    """max_predictions and data.seq_len against the data and the model (the settings' own checks ran already)."""
    self.settings.check_data(self.config)

  def feature_spec(self, batch_size: int) -> FeatureSpec:
    L, P = self.seq_len, self.max_predictions
    spec: FeatureSpec = {name: ((batch_size, L), np.int32)
                         for name in ("input_ids", "token_type_ids", "attention_mask")}
    spec.update({name: ((batch_size, P), np.int32) for name in ("masked_positions", "masked_ids", *SBO_FEATURES)})
    spec.update({name: ((batch_size, P), np.float32) for name in ("masked_weights", "sbo_weights")})
    return spec

  def synthetic_batch(self, batch_size: int, rng: np.random.Generator) -> dict:
    """Random tokens with the objective's shapes and mask rate, each target a span of its own (benchmarks, plans)."""
    L, P, V = self.seq_len, self.max_predictions, self.config.model.vocab_size
    n_predict = min(P, max(1, round(L * self.settings.mask_rate)))
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
    from bert_jax.objectives import masked_lm_data, span_boundary_data

    o = self.settings
    ids = segments.SpecialIds(cls=tokenizer.cls_id, sep=tokenizer.sep_id, pad=tokenizer.pad_id)
    sequences = segments.segment_pairs(documents, self.seq_len, "none", 0.0, ids, seed)
    tables = masked_lm_data.Tables.from_tokenizer(tokenizer)
    names = self.feature_spec(1)

    @tf.autograph.experimental.do_not_convert
    def features(group: dict) -> dict:  # sequences masked together, with the first one's seed
      masked = span_boundary_data.mask_spans(
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
