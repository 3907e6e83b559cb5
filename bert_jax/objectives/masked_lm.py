"""Masked language modelling (BERT, RoBERTa, ALBERT) with the optional NSP/SOP sentence task.

Features of one example (length L = data.seq_len, P = objective.max_predictions):
  input_ids [L] int32, token_type_ids [L] int32, attention_mask [L] int32 (1 = real token),
  masked_positions [P] int32, masked_ids [P] int32 (the original tokens), masked_weights [P] float32
  (1 = a real prediction, 0 = padding), and sentence_label [] int32 when objective.sentence_task
  is nsp (1 = B is random) or sop (1 = A and B are swapped).
The tf.data transform: documents -> segment pairs or full-sentence packing (bert_jax/data/segments.py) ->
masking (bert_jax/objectives/masked_lm_data.py), all in graph ops. With objective.whole_word on data prepared with
data.word_segmenter=jieba, words are the segmenter's (Chinese BERT-wwm; bert_jax/data/words.py), read from the
documents' word_starts. objective.masking_unit and objective.stages mask by ERNIE's knowledge units, in stages
(bert_jax/objectives/masking_units.py).
"""

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bert_jax import models
from bert_jax.errors import UserError
from bert_jax.objectives import (
  check_fits_positions,
  masking_units,
  settings as settings_lib,
  summarize_tokens,
  token_scores,
)
from bert_jax.objectives.protocol import FeatureSpec

MASKING_GROUP = 64  # sequences masked in one vectorized step


@dataclasses.dataclass(frozen=True)
class Masking(settings_lib.Settings):
  """BERT's dynamic masking (masked_lm_data.mask_tokens), shared by the objectives that mask tokens to predict;
  the defaults are BERT's recipe (bert_jax.recipes.bert_config)."""
  mask_rate: float = 0.15  # share of a sequence's tokens masked to predict
  max_predictions: int = 20  # P: prediction slots per sequence (masked_positions [P]); at most data.seq_len
  mask_token_fraction: float = 0.8  # share of the masked tokens shown as [MASK]
  random_token_fraction: float = 0.1  # share shown as a random token (the rest are left as they are)

  def check(self) -> None:
    settings_lib.check_interval(self, "mask_rate", "(0, 1)")
    settings_lib.check_positive(self, "max_predictions")
    settings_lib.check_token_fractions(self)

  def check_data(self, config: Any) -> None:
    """max_predictions within data.seq_len and data.seq_len within the model's positions."""
    if self.max_predictions > config.data.seq_len:
      raise UserError(f"objective.max_predictions must be in [1, data.seq_len={config.data.seq_len}], got "
                      f"{self.max_predictions}")
    check_fits_positions(config, "max_position")


@dataclasses.dataclass(frozen=True)
class MaskedLMSettings(Masking):
  """config.objective of masked_lm; the defaults are BERT's recipe, and ngram_weights' its fallback (1/n)."""
  whole_word: bool = False  # mask whole words (a word's pieces together; data.word_segmenter's words)
  max_ngram: int = 1  # mask spans of n <= max_ngram tokens (words with whole_word); ALBERT: 3
  ngram_weights: tuple[float, ...] = ()  # p(n) for n = 1..max_ngram (normalized); empty: p(n) ~ 1/n
  sentence_task: str = "nsp"  # nsp (B is random) | sop (A and B swapped) | none
  packing: str = "pairs"  # pairs (segments A and B, BERT/ALBERT) | full_sentences (one segment, RoBERTa)
  short_seq_prob: float = 0.1  # pairs: share of sequences cut shorter than data.seq_len (segments.segment_pairs)
  masking_unit: str = "piece"  # piece | word | phrase | entity: what is masked whole (objectives/masking_units.py)
  stages: tuple[tuple[int, str], ...] = ()  # ((steps, unit), ...): training's units in turn (ERNIE); () masking_unit

  def check(self) -> None:
    super().check()
    masking_units.check(self)
    settings_lib.check_choice(self, "sentence_task", ("nsp", "sop", "none"))
    settings_lib.check_choice(self, "packing", ("pairs", "full_sentences"))
    if self.packing == "full_sentences" and self.sentence_task != "none":
      raise UserError("objective.packing=full_sentences has no sentence pairs; set objective.sentence_task=none")
    settings_lib.check_positive(self, "max_ngram")
    weights = self.ngram_weights
    if weights and (len(weights) != self.max_ngram or min(weights) < 0 or sum(weights) <= 0):
      raise UserError(f"objective.ngram_weights must be {self.max_ngram} (objective.max_ngram) weights >= 0 with a "
                      f"positive sum, or empty for p(n) ~ 1/n; got {weights}")


class MaskedLM:
  FAMILIES: ClassVar[tuple[str, ...] | None] = ("bert", "ernie")
  SETTINGS: ClassVar[type[MaskedLMSettings]] = MaskedLMSettings
  settings: MaskedLMSettings  # config.objective, read in __init__

  def __init__(self, config: Any):
    self.config = config
    self.settings = settings_lib.from_config(self.SETTINGS, config.objective)
    self.seq_len = config.data.seq_len
    self.max_predictions = self.settings.max_predictions
    self.sentence_task = self.settings.sentence_task
    self.token_types = 2 if self.settings.packing == "pairs" else 1  # segments A and B, or one segment
    self.validate()

  def validate(self) -> None:
    """What relates the settings to the data and the model (the settings' own checks ran in from_config)."""
    o, model = self.settings, self.config.model
    if o.sentence_task != "none" and self.config.model.get("sentence_head", "none") != o.sentence_task:
      raise UserError(f"objective.sentence_task={o.sentence_task} needs model.sentence_head={o.sentence_task}")
    o.check_data(self.config)
    if self.token_types > model.type_vocab_size:
      raise UserError(f"objective.packing=pairs gives segment B token type 1 but model.type_vocab_size="
                      f"{model.type_vocab_size}; set --config.model.type_vocab_size=2 or "
                      "--config.objective.packing=full_sentences")
    masking_units.check_data(o, self.config.data.get("word_segmenter", "pieces"))

  def feature_spec(self, batch_size: int) -> FeatureSpec:
    L, P = self.seq_len, self.max_predictions
    spec: FeatureSpec = {"input_ids": ((batch_size, L), np.int32), "token_type_ids": ((batch_size, L), np.int32),
            "attention_mask": ((batch_size, L), np.int32), "masked_positions": ((batch_size, P), np.int32),
            "masked_ids": ((batch_size, P), np.int32), "masked_weights": ((batch_size, P), np.float32)}
    if self.sentence_task != "none":
      spec["sentence_label"] = ((batch_size,), np.int32)
    return spec

  def synthetic_batch(self, batch_size: int, rng: np.random.Generator) -> dict:
    """Random tokens with the objective's shapes, mask rate and token types (for benchmarks and plans)."""
    L, P, V = self.seq_len, self.max_predictions, self.config.model.vocab_size
    n_predict = min(P, max(1, round(L * self.settings.mask_rate)))
    positions = np.sort(np.stack([rng.choice(np.arange(1, L), P, replace=False) for _ in range(batch_size)]), 1)
    types_L = ((np.arange(L) >= L // 2) * (self.token_types - 1)).astype(np.int32)  # segment B: the second half
    batch = {"input_ids": rng.integers(5, V, (batch_size, L), dtype=np.int32),
             "token_type_ids": np.tile(types_L, (batch_size, 1)),
             "attention_mask": np.ones((batch_size, L), np.int32),
             "masked_positions": positions.astype(np.int32),
             "masked_ids": rng.integers(5, V, (batch_size, P), dtype=np.int32),
             "masked_weights": (np.arange(P)[None] < n_predict).astype(np.float32).repeat(batch_size, 0)}
    if self.sentence_task != "none":
      batch["sentence_label"] = rng.integers(0, 2, (batch_size,), dtype=np.int32)
    return batch

  def dataset(self, documents, tokenizer, seed: int, train: bool):
    """Unbatched features (feature_spec without the batch axis) from a stream of tokenized documents; the
    masks differ wherever a document occurs in the stream, so a repeated stream is masked anew each epoch."""
    from bert_jax.data import segments
    from bert_jax.data.tf_cpu import tf
    from bert_jax.objectives import masked_lm_data

    o = self.settings
    ids = segments.SpecialIds(cls=tokenizer.cls_id, sep=tokenizer.sep_id, pad=tokenizer.pad_id)
    by_units = masking_units.by_units(o)
    stored_words = (o.whole_word or by_units) and "word_starts" in documents.element_spec
    flags = masking_units.FLAGS
    if stored_words:  # each token's word-start flags ride through the segment building in its id's low bits
      documents = documents.map(_flag_in_ids)
      ids = segments.SpecialIds(cls=flags * ids.cls + flags - 1, sep=flags * ids.sep + flags - 1,
                                pad=flags * ids.pad + flags - 1)
    if o.packing == "pairs":
      sequences = segments.segment_pairs(documents, self.seq_len, o.sentence_task, o.short_seq_prob, ids, seed)
    else:
      sequences = segments.full_sentences(documents, self.seq_len, ids, seed)
    tables = masked_lm_data.Tables.from_tokenizer(tokenizer)
    names = self.feature_spec(1)
    schedule = masking_units.schedule(o, train)
    batch = masking_units.local_batch(self.config)

    @tf.autograph.experimental.do_not_convert
    def features(group: dict, index=0) -> dict:  # sequences masked together (the index-th group), the first's seed
      input_ids, stored, word_start, priority = group["input_ids"], None, None, None
      if stored_words:
        input_ids, stored = input_ids // flags, input_ids % flags
        word_start = stored % 2 > 0
      if by_units:
        unit = masking_units.unit_at(schedule, tf.cast(index, tf.int64) * MASKING_GROUP // batch)
        word_start, priority = masking_units.starts(unit, input_ids, stored, tables.word_start_V)
      masked = masked_lm_data.mask_tokens(input_ids, group["seed"][0], tables, o.mask_rate, self.max_predictions,
                                   o.whole_word or by_units, o.max_ngram, o.mask_token_fraction,
                                   o.random_token_fraction, word_start, o.ngram_weights, priority)
      return {name: masked[name] if name in masked else group[name] for name in names}

    groups = sequences.batch(MASKING_GROUP)
    if len(schedule[0]) > 1:  # stages: a group's step from its index (the count rides in the pipeline's position)
      groups = groups.enumerate().map(lambda index, group: features(group, index),
                                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
      groups = groups.map(features, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return groups.unbatch()

  def forward(self, model, params, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]:
    outputs = model.apply({"params": params}, batch["input_ids"], batch["token_type_ids"],
                          batch["attention_mask"], batch["masked_positions"], rngs=rngs)
    logits_BPV = outputs["mlm_logits"].astype(jnp.float32)
    weights_BP = batch["masked_weights"]
    nll_BP, correct_BP = token_scores.nll_and_correct(logits_BPV, batch["masked_ids"])
    sums = {"mlm": jnp.sum(nll_BP * weights_BP)}
    metrics = {"mlm_correct": jnp.sum(correct_BP * weights_BP)}
    if self.sentence_task != "none":
      logits_B2 = outputs["sentence_logits"].astype(jnp.float32)
      labels_B = batch["sentence_label"]
      sums["sentence"] = jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits_B2, labels_B))
      metrics["sentence_correct"] = jnp.sum((jnp.argmax(logits_B2, -1) == labels_B).astype(jnp.float32))
    return sums, metrics

  def predict(self, model, params, tokenizer, texts: list[str], top_k: int) -> list[dict]:
    """Fill-mask (`bert-jax predict`): the top_k pieces at each [MASK] of each text, as [CLS] text [SEP] in
    segment A (see objectives/blanks.py)."""
    from bert_jax.objectives import blanks

    def frame(ids):
      return [tokenizer.cls_id, *ids, tokenizer.sep_id], [0] * (len(ids) + 2), 1

    logits = jax.jit(lambda params, ids, types, mask, positions: model.apply(
        {"params": params}, ids, types, mask, positions)["mlm_logits"].astype(jnp.float32))
    return blanks.fill_masks(texts, tokenizer, top_k, models.max_sequence_length(self.config.model), frame,
                             lambda *batch: logits(params, *batch))

  def counts(self, batch: dict) -> dict:
    counts = {"mlm": jnp.sum(batch["masked_weights"])}
    if self.sentence_task != "none":
      counts["sentence"] = jnp.asarray(batch["sentence_label"].shape[0], jnp.float32)
    return counts

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    result = summarize_tokens("mlm", sums, metrics, counts)
    if self.sentence_task != "none":
      n = max(float(counts["sentence"]), 1.0)
      result[f"{self.sentence_task}_loss"] = float(sums["sentence"]) / n
      result[f"{self.sentence_task}_accuracy"] = float(metrics["sentence_correct"]) / n
    return result


def _flag_in_ids(document: dict) -> dict:
  """token_ids * masking_units.FLAGS + word_starts (segments.py only moves tokens, so the flags survive it); the rest
  as given."""
  flagged = {name: values for name, values in document.items() if name != "word_starts"}
  flagged["token_ids"] = document["token_ids"] * masking_units.FLAGS + document["word_starts"]
  return flagged
