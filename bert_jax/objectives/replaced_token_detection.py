"""ELECTRA's replaced-token detection (google-research/electra, run_pretraining.py): the generator, a small
masked LM, fills the masked positions with tokens sampled from its softmax; the discriminator labels every
token original or replaced. Loss = gen_weight x generator MLM loss + disc_weight x discriminator binary
cross-entropy averaged over all non-padding tokens (the release: 1 and 50).

The tf.data side is masked_lm's: chunks of whole sentences from one document as a single segment, no
sentence task (segments.segment_pairs with sentence_task none), dynamically masked with masked_lm_data.py; the
release's recipe masks 15% (25% for Large), 85% of them to [MASK] and 15% left as they are, never a random
token (pretrain_helpers.mask). Features are masked_lm's.

In the step: the generator reads the masked input; a token is drawn at each masked position by Gumbel-max
from softmax(logits / temperature) (stop-gradient); the discriminator reads the original sequence with the
drawn tokens in the masked positions; its label is (its input != the original), so a masked token the
generator drew correctly counts as original. The draws use a key folded from the step's dropout key (a
fixed key when none is given: evaluation), as do the two towers' dropout.
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax

from bert_jax.errors import UserError
from bert_jax.objectives import settings as settings_lib, summarize_tokens, token_scores, training_loss
from bert_jax.objectives.masked_lm import MaskedLM, MaskedLMSettings

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


@dataclasses.dataclass(frozen=True)
class ReplacedTokenDetectionSettings(MaskedLMSettings):
  """config.objective of replaced_token_detection: masked_lm's masking (packing pairs: one segment per document
  chunk, as sentence_task none makes it) with ELECTRA's recipe as the defaults (bert_jax.recipes.electra_config),
  and the loss."""
  max_predictions: int = 19  # int((mask_rate + 0.005) x 128), as the release caps it
  mask_token_fraction: float = 0.85  # pretrain_helpers.mask: 85% [MASK], 15% left as they are, none random
  random_token_fraction: float = 0.0
  sentence_task: str = "none"  # no sentence task (the only value it takes)
  short_seq_prob: float = 0.05  # the release's random target length
  gen_weight: float = 1.0  # weight of the generator's MLM loss
  disc_weight: float = 50.0  # weight of the discriminator's replaced-token loss
  temperature: float = 1.0  # the generator's samples are drawn from softmax(logits / temperature)

  def check(self) -> None:
    if self.sentence_task != "none":
      raise UserError("objective replaced_token_detection has no sentence task; set objective.sentence_task=none")
    settings_lib.check_interval(self, "gen_weight", "[0, inf)")
    settings_lib.check_interval(self, "disc_weight", "[0, inf)")
    settings_lib.check_interval(self, "temperature", "(0, inf)")
    super().check()


class ReplacedTokenDetection(MaskedLM):
  FAMILIES = ("electra",)
  SETTINGS = ReplacedTokenDetectionSettings
  settings: ReplacedTokenDetectionSettings  # MaskedLM.__init__ builds it from SETTINGS

  def validate(self) -> None:
    """max_predictions and data.seq_len against the data and the model; ELECTRA's token types and words are
    not checked (masked_lm's validate does)."""
    self.settings.check_data(self.config)

  def forward(self, model, params, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]:
    o = self.settings
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
