"""DistilBERT's distillation (Sanh et al. 2019; the release's examples/research_projects/distillation/distiller.py in
its MLM mode): a student learns the masked-LM data of masked_lm (full sentences, one segment, no NSP; the same
features and masking: objectives/masked_lm_data.py) against a frozen teacher, with the loss

  alpha_ce  x T^2 KL(softmax(teacher / T) || softmax(student / T)) per masked token (the MLM logits, T = temperature)
  + alpha_mlm x the student's MLM loss per masked token
  + alpha_cos x (1 - cosine(student's, teacher's last hidden state)) per real token

The teacher (objective.teacher: a run's workdir, one of its steps, or a `convert --from-hf` output; objectives/
teacher.py) is a masked-LM model of a family whose recipe trains masked_lm or distillation (BERT, RoBERTa, ALBERT,
DistilBERT) with the student's vocabulary. The Trainer loads its parameters, shards them with the run's rules and
passes them into the compiled train and eval steps (bert_jax/train/frozen.py); `forward` runs the teacher
deterministically under stop_gradient. With objective.init_from_teacher the student starts from the teacher's
embeddings, every other layer and MLM head (models/distilbert.py, from_bert). Without a teacher the loss is the MLM
term alone. Evaluation reports the teacher's MLM accuracy on the same batches beside the student's.
"""

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from bert_jax import models
from bert_jax.errors import UserError
from bert_jax.models import distilbert
from bert_jax.objectives import (
  settings as settings_lib,
  summarize_tokens,
  teacher as teacher_lib,
  token_scores,
  training_loss,
)
from bert_jax.objectives.masked_lm import MaskedLM, MaskedLMSettings

TEACHER_OBJECTIVES = ("masked_lm", "distillation")  # a family whose recipe trains one of these makes a teacher


@dataclasses.dataclass(frozen=True)
class DistillationSettings(MaskedLMSettings):
  """config.objective of distillation; the defaults are the release's example run (train.py with --alpha_ce 5.0
  --alpha_mlm 2.0 --alpha_cos 1.0 --mlm)."""
  max_predictions: int = 80  # 15% of the release's 512 tokens
  sentence_task: str = "none"
  packing: str = "full_sentences"
  teacher: str = ""  # a run's workdir, W/checkpoints/STEP or a `convert --from-hf` output; empty: no teacher
  temperature: float = 2.0  # softmax temperature of the soft targets
  alpha_ce: float = 5.0  # weight of the soft-target cross-entropy (KL) against the teacher
  alpha_mlm: float = 2.0  # weight of the MLM loss
  alpha_cos: float = 1.0  # weight of the cosine loss between the last hidden states
  init_from_teacher: bool = True  # the student starts from the teacher's embeddings, layers and MLM head

  def check(self) -> None:
    super().check()
    if self.sentence_task != "none" or self.packing != "full_sentences":
      raise UserError("objective distillation trains on one segment without a sentence task (DistilBERT has no token "
                      "types); set objective.sentence_task=none and objective.packing=full_sentences")
    settings_lib.check_interval(self, "temperature", "(0, inf)")
    for name in ("alpha_ce", "alpha_mlm", "alpha_cos"):
      settings_lib.check_interval(self, name, "[0, inf)")


class Distillation(MaskedLM):
  FAMILIES: ClassVar[tuple[str, ...] | None] = ("distilbert",)
  SETTINGS: ClassVar[type[DistillationSettings]] = DistillationSettings
  settings: DistillationSettings

  def __init__(self, config: Any):
    super().__init__(config)
    o = self.settings
    self.teacher = teacher_lib.find(o.teacher) if o.teacher else None
    if self.teacher is not None:
      self.check_teacher(self.teacher.model_config)
    self.teacher_model = teacher_lib.module(self.teacher)

  def validate(self) -> None:
    self.settings.check_data(self.config)

  def check_teacher(self, teacher: Any) -> None:
    """The teacher reads the student's inputs and scores its vocabulary (and, for the cosine loss, is as wide)."""
    o, student = self.settings, self.config.model
    objective = models.descriptor(teacher).objective
    if objective not in TEACHER_OBJECTIVES:
      raise UserError(f"objective.teacher is a {teacher.family} model (trained with {objective}); a teacher must be a "
                      "masked-LM model (BERT, RoBERTa, ALBERT or DistilBERT)")
    if teacher.vocab_size != student.vocab_size:
      raise UserError(f"the teacher's vocabulary has {teacher.vocab_size} ids and model.vocab_size is "
                      f"{student.vocab_size}; train the student with the teacher's tokenizer and vocabulary size")
    if o.alpha_cos > 0 and teacher.hidden_size != student.hidden_size:
      raise UserError(f"the cosine loss compares hidden states, and the teacher's are {teacher.hidden_size} wide, "
                      f"model.hidden_size {student.hidden_size}; set one to the other or objective.alpha_cos=0")
    if o.init_from_teacher:
      for key in ("hidden_size", "num_heads", "intermediate_size", "hidden_act"):
        if teacher.get(key) != student[key]:
          raise UserError(f"objective.init_from_teacher copies the teacher's layers, whose {key} is "
                          f"{teacher.get(key)}; set --config.model.{key}={teacher.get(key)} or "
                          "--config.objective.init_from_teacher=false")
    positions = models.max_sequence_length(teacher)
    if positions is not None and self.config.data.seq_len > positions:
      raise UserError(f"data.seq_len={self.config.data.seq_len} is more than the teacher's {positions} positions; set "
                      f"--config.data.seq_len={positions}")

  @property
  def frozen_source(self) -> teacher_lib.Source | None:
    """The model whose parameters the steps get as `frozen` (the teacher), None without one."""
    return self.teacher

  def initial_params(self, teacher_params: dict) -> dict | None:
    """The student's parameters (unscanned) from the teacher's (unscanned), or None when it starts at random."""
    if not self.settings.init_from_teacher or self.teacher is None:
      return None
    rows = len(teacher_params["encoder"]["embeddings"]["position_embeddings"]["embedding"])
    offset = rows - (models.max_sequence_length(self.teacher.model_config) or rows)  # RoBERTa's, past the padding id
    return distilbert.from_bert(teacher_params, distilbert.make_config(self.config.model), offset)

  def forward(self, model, params, batch: dict, rngs: dict | None = None, frozen: Any = None) -> tuple[dict, dict]:
    o = self.settings
    inputs = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["masked_positions"])
    student = model.apply({"params": params}, *inputs, rngs=rngs)
    logits_BPV = student["mlm_logits"].astype(jnp.float32)
    weights_BP = batch["masked_weights"]
    nll_BP, correct_BP = token_scores.nll_and_correct(logits_BPV, batch["masked_ids"])
    mlm = jnp.sum(nll_BP * weights_BP)
    sums = {"mlm": o.alpha_mlm * mlm}
    metrics = {"mlm_correct": jnp.sum(correct_BP * weights_BP), "mlm_nll": mlm}
    if frozen is None or self.teacher_model is None:
      return sums, metrics
    teacher = self.teacher_model.apply({"params": jax.lax.stop_gradient(frozen)}, *inputs)
    teacher_BPV = jax.lax.stop_gradient(teacher["mlm_logits"].astype(jnp.float32))
    soft_BP = soft_cross_entropy(logits_BPV, teacher_BPV, o.temperature)
    tokens_BL = batch["attention_mask"].astype(jnp.float32)
    distance_BL = 1.0 - cosine(student["sequence_output"].astype(jnp.float32),
                               jax.lax.stop_gradient(teacher["sequence_output"].astype(jnp.float32)))
    _, teacher_correct_BP = token_scores.nll_and_correct(teacher_BPV, batch["masked_ids"])
    soft, cos = jnp.sum(soft_BP * weights_BP), jnp.sum(distance_BL * tokens_BL)
    sums.update(soft=o.alpha_ce * soft, cos=o.alpha_cos * cos)
    metrics.update(soft=soft, cos=cos, teacher_correct=jnp.sum(teacher_correct_BP * weights_BP))
    return sums, metrics

  def counts(self, batch: dict) -> dict:
    masked = jnp.sum(batch["masked_weights"])
    if self.teacher is None:
      return {"mlm": masked}
    return {"mlm": masked, "soft": masked, "cos": jnp.sum(batch["attention_mask"].astype(jnp.float32))}

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    result = summarize_tokens("mlm", {"mlm": metrics["mlm_nll"]}, metrics, counts)
    result["loss"] = float(training_loss({t: float(v) for t, v in sums.items()},
                                         {t: float(v) for t, v in counts.items()}))
    if "soft" in metrics:
      masked, tokens = max(float(counts["soft"]), 1.0), max(float(counts["cos"]), 1.0)
      result.update(soft_loss=float(metrics["soft"]) / masked, cos_loss=float(metrics["cos"]) / tokens,
                    teacher_mlm_accuracy=float(metrics["teacher_correct"]) / masked)
    return result


def soft_cross_entropy(student_BPV: jax.Array, teacher_BPV: jax.Array, temperature: float) -> jax.Array:
  """T^2 KL(softmax(teacher / T) || softmax(student / T)) per position [B, P]: the release's KLDivLoss of the
  student's log-probabilities against the teacher's probabilities at temperature T, scaled by T^2."""
  log_student = jax.nn.log_softmax(student_BPV / temperature, axis=-1)
  log_teacher = jax.nn.log_softmax(teacher_BPV / temperature, axis=-1)
  return temperature ** 2 * jnp.sum(jnp.exp(log_teacher) * (log_teacher - log_student), axis=-1)


def cosine(x_BLD: jax.Array, y_BLD: jax.Array, eps: float = 1e-8) -> jax.Array:
  """Cosine similarity of each position's two vectors [B, L] (torch's cosine_similarity, eps on the norms'
  product)."""
  norms_BL = jnp.linalg.norm(x_BLD, axis=-1) * jnp.linalg.norm(y_BLD, axis=-1)
  return jnp.sum(x_BLD * y_BLD, axis=-1) / jnp.maximum(norms_BL, eps)
