"""ELECTRA's replaced-token detection (google-research/electra, run_pretraining.py): the generator, a small
masked LM, fills the masked positions with tokens sampled from its softmax; the discriminator labels every
token original or replaced. Loss = gen_weight x generator MLM loss + disc_weight x discriminator binary
cross-entropy averaged over all non-padding tokens (the release: 1 and 50).

The tf.data side is masked_lm's: chunks of whole sentences from one document as a single segment, no
sentence task (segments.segment_pairs with sentence_task none), dynamically masked with masking.py; the
release's recipe masks 15% (25% for Large), 85% of them to [MASK] and 15% left as they are, never a random
token (pretrain_helpers.mask). Features are masked_lm's.

In the step: the generator reads the masked input; a token is drawn at each masked position by Gumbel-max
from softmax(logits / temperature) (stop-gradient); the discriminator reads the original sequence with the
drawn tokens in the masked positions; its label is (its input != the original), so a masked token the
generator drew correctly counts as original. The draws use a key folded from the step's dropout key (a
fixed key when none is given: evaluation), as do the two towers' dropout.
"""

import jax
import jax.numpy as jnp
import optax

from bert_jax import models
from bert_jax.errors import UserError
from bert_jax.objectives import summarize_tokens, token_scores, training_loss
from bert_jax.objectives.masked_lm import MaskedLM

_GENERATOR, _DISCRIMINATOR, _SAMPLE = 0, 1, 2  # what each key folded from the step's dropout key is for


def step_keys(rngs: dict | None) -> tuple[dict | None, dict | None, jax.Array]:
  """(generator rngs, discriminator rngs, sampling key) from the rngs the step passes."""
  if not rngs or "dropout" not in rngs:
    return None, None, jax.random.key(0)
  key = rngs["dropout"]
  return ({"dropout": jax.random.fold_in(key, _GENERATOR)}, {"dropout": jax.random.fold_in(key, _DISCRIMINATOR)},
          jax.random.fold_in(key, _SAMPLE))


def sample_tokens(logits_BPV: jax.Array, key: jax.Array, temperature: float) -> jax.Array:
  """[B, P] ids drawn from softmax(logits / temperature) by the Gumbel-max trick, as the release draws them."""
  gumbel_BPV = jax.random.gumbel(key, logits_BPV.shape, jnp.float32)
  return jnp.argmax(jax.lax.stop_gradient(logits_BPV) / temperature + gumbel_BPV, axis=-1).astype(jnp.int32)


def scatter(ids_BL: jax.Array, positions_BP: jax.Array, values_BP: jax.Array, weights_BP: jax.Array) -> jax.Array:
  """ids_BL with values_BP written at positions_BP where weights_BP > 0."""
  at_BPL = (positions_BP[..., None] == jnp.arange(ids_BL.shape[1])) & (weights_BP[..., None] > 0)
  written_BL = jnp.any(at_BPL, axis=1)
  return jnp.where(written_BL, jnp.sum(at_BPL * values_BP[..., None], axis=1), ids_BL).astype(ids_BL.dtype)


def corrupt(batch: dict, logits_BPV: jax.Array, key: jax.Array, temperature: float):
  """(sampled_BP, fake_BL, labels_BL): the generator's draws at the masked positions, the discriminator's input
  (the original sequence with the draws in the masked positions) and its labels, 1.0 where that input differs
  from the original (never on padding)."""
  sampled_BP = sample_tokens(logits_BPV, key, temperature)
  positions_BP, weights_BP = batch["masked_positions"], batch["masked_weights"]
  original_BL = scatter(batch["input_ids"], positions_BP, batch["masked_ids"], weights_BP)
  fake_BL = scatter(original_BL, positions_BP, sampled_BP, weights_BP)
  labels_BL = ((fake_BL != original_BL) & (batch["attention_mask"] > 0)).astype(jnp.float32)
  return sampled_BP, fake_BL, labels_BL


class ReplacedTokenDetection(MaskedLM):
  FAMILIES = ("electra",)

  def validate(self) -> None:
    o, model = self.config.objective, self.config.model
    if o.sentence_task != "none":
      raise UserError("objective replaced_token_detection has no sentence task; set objective.sentence_task=none")
    if o.disc_weight < 0 or o.gen_weight < 0 or o.temperature <= 0:
      raise UserError("objective.gen_weight and objective.disc_weight must be >= 0 and objective.temperature > 0")
    if not 0.0 < o.mask_rate < 1.0:
      raise UserError(f"objective.mask_rate must be in (0, 1), got {o.mask_rate}")
    if not 0 < o.max_predictions <= self.seq_len:
      raise UserError(f"objective.max_predictions must be in [1, data.seq_len={self.seq_len}], got {o.max_predictions}")
    positions = models.max_sequence_length(model)
    if self.seq_len > positions:
      raise UserError(f"data.seq_len={self.seq_len} is more than the model's {positions} positions; set "
                      f"--config.data.seq_len={positions} or raise model.max_position")
    if o.packing not in ("pairs", "full_sentences"):
      raise UserError(f"objective.packing must be pairs (one segment per document chunk) or full_sentences, "
                      f"got '{o.packing}'")
    if o.max_ngram < 1 or not 0 <= o.mask_token_fraction + o.random_token_fraction <= 1:
      raise UserError("objective.max_ngram must be >= 1 and mask_token_fraction + random_token_fraction <= 1")

  def forward(self, model, params, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]:
    o = self.config.objective
    generator_rngs, discriminator_rngs, sample_key = step_keys(rngs)
    types_BL, mask_BL = batch["token_type_ids"], batch["attention_mask"]
    positions_BP, weights_BP = batch["masked_positions"], batch["masked_weights"]
    logits_BPV = model.apply({"params": params}, batch["input_ids"], types_BL, mask_BL, positions_BP,
                             method="generate", rngs=generator_rngs).astype(jnp.float32)
    nll_BP, correct_BP = token_scores.nll_and_correct(logits_BPV, batch["masked_ids"])
    sampled_BP, fake_BL, labels_BL = corrupt(batch, logits_BPV, sample_key, o.temperature)
    disc_BL = model.apply({"params": params}, fake_BL, types_BL, mask_BL, method="discriminate",
                          rngs=discriminator_rngs).astype(jnp.float32)
    tokens_BL = mask_BL.astype(jnp.float32)
    bce_BL = optax.sigmoid_binary_cross_entropy(disc_BL, labels_BL)
    predicted_BL = (disc_BL > 0).astype(jnp.float32) * tokens_BL
    sums = {"mlm": o.gen_weight * jnp.sum(nll_BP * weights_BP), "disc": o.disc_weight * jnp.sum(bce_BL * tokens_BL)}
    metrics = {"mlm_correct": jnp.sum(correct_BP * weights_BP),
               "mlm_nll": jnp.sum(nll_BP * weights_BP), "disc_bce": jnp.sum(bce_BL * tokens_BL),
               "sampled_correct": jnp.sum((sampled_BP == batch["masked_ids"]) * weights_BP),
               "disc_correct": jnp.sum((predicted_BL == labels_BL) * tokens_BL),
               "disc_predicted": jnp.sum(predicted_BL), "disc_true_positive": jnp.sum(predicted_BL * labels_BL),
               "replaced": jnp.sum(labels_BL)}
    return sums, metrics

  def counts(self, batch: dict) -> dict:
    return {"mlm": jnp.sum(batch["masked_weights"]), "disc": jnp.sum(batch["attention_mask"].astype(jnp.float32))}

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    m = {k: float(v) for k, v in metrics.items()}
    masked, tokens = max(float(counts["mlm"]), 1.0), max(float(counts["disc"]), 1.0)
    result = summarize_tokens("mlm", {"mlm": m["mlm_nll"]}, m, counts)
    result.update({
        "loss": float(training_loss({t: float(v) for t, v in sums.items()}, {t: float(v) for t, v in counts.items()})),
        "sampled_accuracy": m["sampled_correct"] / masked,
        "disc_loss": m["disc_bce"] / tokens, "disc_accuracy": m["disc_correct"] / tokens,
        "disc_precision": m["disc_true_positive"] / max(m["disc_predicted"], 1.0),
        "disc_recall": m["disc_true_positive"] / max(m["replaced"], 1.0),
        "replaced_share": m["replaced"] / tokens})
    return result
