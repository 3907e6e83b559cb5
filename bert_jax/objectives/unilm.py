"""UniLM (Dong et al. 2019): one BERT encoder pretrained as four language models that differ only in which tokens
each token may attend to, with BERT's cloze targets in both segments.

Features: masked_lm's with packing=pairs ([CLS] A [SEP] B [SEP], token types 0 and 1, 15% of the tokens masked
80/10/10, the NSP label). The self-attention mask [B, L, L] (1 = the query may see the key) is built in forward:

  bidirectional   every token sees every token (BERT), with NSP as UniLM's bidirectional LM keeps it
  seq2seq         segment A (type 0: [CLS] A [SEP]) sees A both ways; B sees A and B up to itself
  left_to_right   each token sees the tokens up to itself
  right_to_left   each token sees itself and the tokens after it

Padding is never seen; a padding query sees every real token (its output is not used). Training draws one mask
type per batch (per microbatch with gradient accumulation) with the paper's proportions 1/3, 1/3, 1/6, 1/6, from
the key the train step folds from the step, so every host takes the same and a rerun the same again. The NSP term
counts only the rows of bidirectional batches; the sentence loss's denominator stays the batch size, so in the
loss it is NSP's mean on a bidirectional batch and 0 on the others. Evaluation (no key) gives row r the type
EVAL_TYPES[r % 6], so every eval batch reports all four in the same proportions.

With objective.lm_segments (UniLM v1 with --new_segment_ids: microsoft/unilm unilm-v1/src/biunilm/seq2seq_loader.py
and modeling.py), the segment embedding names the LM as well: types 0/1 bidirectional, 2 left-to-right, 3
right-to-left, 4/5 seq2seq (A/B); it needs model.type_vocab_size >= 6. The model stays a BERT: a UniLM checkpoint
converts and exports as one.

The paper leaves two things open that ours decides: "within one training batch, 1/3 of the time ..." is read as one
mask type per batch; and the seq2seq and unidirectional LMs train on the same pairs as the bidirectional one,
B following A or (half the time, NSP's negatives) from another document.
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax

from bert_jax.errors import UserError
from bert_jax.objectives import token_scores
from bert_jax.objectives.masked_lm import MaskedLM, MaskedLMSettings

MASK_TYPES = ("bidirectional", "seq2seq", "left_to_right", "right_to_left")
PROPORTIONS = (1 / 3, 1 / 3, 1 / 6, 1 / 6)
EVAL_TYPES = (0, 1, 0, 1, 2, 3)  # eval row r: MASK_TYPES[EVAL_TYPES[r % 6]], the proportions in six rows
LM_SEGMENTS = ((0, 1), (4, 5), (2, 2), (3, 3))  # per mask type: the token types of segments A and B
MASK_TYPE_STREAM = 0x756E69  # folded into the step's key for the mask type, apart from dropout's own use of it


def self_attention_masks(attention_mask_BL: jax.Array, token_type_ids_BL: jax.Array,
                         mask_type_B: jax.Array) -> jax.Array:
  """Boolean [B, L, L] (query, key): row b under MASK_TYPES[mask_type_B[b]]; segment A is where the type is 0."""
  length = attention_mask_BL.shape[1]
  real_BL = attention_mask_BL > 0
  query_LL, key_LL = jnp.arange(length)[:, None], jnp.arange(length)[None, :]
  source_BL = real_BL & (token_type_ids_BL == 0)
  seq2seq_BLL = source_BL[:, None, :] | (~source_BL[:, :, None] & (key_LL <= query_LL))
  rules_BLL = [jnp.ones_like(seq2seq_BLL), seq2seq_BLL, (key_LL <= query_LL)[None], (key_LL >= query_LL)[None]]
  t_B11 = mask_type_B[:, None, None]
  allowed_BLL = jnp.select([t_B11 == t for t in range(len(MASK_TYPES))], rules_BLL, False)
  return real_BL[:, None, :] & (allowed_BLL | ~real_BL[:, :, None])


def lm_segment_ids(attention_mask_BL: jax.Array, token_type_ids_BL: jax.Array, mask_type_B: jax.Array) -> jax.Array:
  """UniLM v1's token types: segment A and B of row b take LM_SEGMENTS[mask_type_B[b]]; padding stays 0."""
  table_B2 = jnp.asarray(LM_SEGMENTS, jnp.int32)[mask_type_B]
  types_BL = jnp.take_along_axis(table_B2, jnp.clip(token_type_ids_BL, 0, 1), axis=1)
  return jnp.where(attention_mask_BL > 0, types_BL, 0)


def mask_types(batch_size: int, rngs: dict | None) -> jax.Array:
  """[B] int32 indices into MASK_TYPES: one draw for the whole batch from rngs["dropout"], or EVAL_TYPES without."""
  if not rngs or "dropout" not in rngs:
    return jnp.asarray(EVAL_TYPES, jnp.int32)[jnp.arange(batch_size) % len(EVAL_TYPES)]
  key = jax.random.fold_in(rngs["dropout"], MASK_TYPE_STREAM)
  chosen = jax.random.choice(key, len(MASK_TYPES), p=jnp.asarray(PROPORTIONS))
  return jnp.full((batch_size,), chosen, jnp.int32)


@dataclasses.dataclass(frozen=True)
class UniLMSettings(MaskedLMSettings):
  """config.objective of unilm: masked_lm's (BERT's defaults; packing must be pairs) and the LM's segments."""
  lm_segments: bool = False  # UniLM v1's --new_segment_ids: token types name the LM too (needs type_vocab_size 6)


class UniLM(MaskedLM):
  FAMILIES = ("bert",)
  SETTINGS = UniLMSettings
  settings: UniLMSettings  # MaskedLM.__init__ builds it from SETTINGS

  @property
  def lm_segments(self) -> bool:
    return self.settings.lm_segments

  def validate(self) -> None:
    super().validate()
    o = self.settings
    if o.packing != "pairs":
      raise UserError(f"objective unilm needs segments A and B (seq2seq); set --config.objective.packing=pairs, got "
                      f"{o.packing!r}")
    if self.lm_segments and self.config.model.type_vocab_size < 6:
      raise UserError(f"objective.lm_segments needs model.type_vocab_size >= 6 (token types 0-5), got "
                      f"{self.config.model.type_vocab_size}; set --config.model.type_vocab_size=6 or "
                      "--config.objective.lm_segments=false")

  def forward(self, model, params, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]:
    mask_type_B = mask_types(batch["input_ids"].shape[0], rngs)
    token_types_BL = batch["token_type_ids"]
    masks_BLL = self_attention_masks(batch["attention_mask"], token_types_BL, mask_type_B)
    if self.lm_segments:
      token_types_BL = lm_segment_ids(batch["attention_mask"], token_types_BL, mask_type_B)
    outputs = model.apply({"params": params}, batch["input_ids"], token_types_BL, masks_BLL,
                          batch["masked_positions"], rngs=rngs)
    logits_BPV = outputs["mlm_logits"].astype(jnp.float32)
    weights_BP = batch["masked_weights"]
    nll_BP, correct_BP = token_scores.nll_and_correct(logits_BPV, batch["masked_ids"])
    nll_BP, correct_BP = nll_BP * weights_BP, correct_BP * weights_BP
    sums = {"mlm": jnp.sum(nll_BP)}
    metrics = {"mlm_correct": jnp.sum(correct_BP)}
    for t, name in enumerate(MASK_TYPES):
      rows_B1 = (mask_type_B == t)[:, None]
      metrics.update({f"{name}_mlm_nll": jnp.sum(nll_BP * rows_B1),
                      f"{name}_mlm_correct": jnp.sum(correct_BP * rows_B1),
                      f"{name}_mlm_predictions": jnp.sum(weights_BP * rows_B1)})
    if self.sentence_task != "none":
      bidirectional_B = (mask_type_B == 0).astype(jnp.float32)
      logits_B2 = outputs["sentence_logits"].astype(jnp.float32)
      labels_B = batch["sentence_label"]
      nll_B = optax.softmax_cross_entropy_with_integer_labels(logits_B2, labels_B)
      sums["sentence"] = jnp.sum(nll_B * bidirectional_B)
      metrics["sentence_correct"] = jnp.sum((jnp.argmax(logits_B2, -1) == labels_B) * bidirectional_B)
      metrics["sentence_examples"] = jnp.sum(bidirectional_B)
    return sums, metrics

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    result = {k: v for k, v in super().summarize(sums, metrics, counts).items() if not k.startswith(self.sentence_task)}
    for name in MASK_TYPES:
      n = max(float(metrics[f"{name}_mlm_predictions"]), 1.0)
      result[f"{name}_mlm_loss"] = float(metrics[f"{name}_mlm_nll"]) / n
      result[f"{name}_mlm_accuracy"] = float(metrics[f"{name}_mlm_correct"]) / n
    if self.sentence_task != "none":  # over the rows that trained NSP: those under the bidirectional mask
      n = max(float(metrics["sentence_examples"]), 1.0)
      result[f"{self.sentence_task}_loss"] = float(sums["sentence"]) / n
      result[f"{self.sentence_task}_accuracy"] = float(metrics["sentence_correct"]) / n
    return result

