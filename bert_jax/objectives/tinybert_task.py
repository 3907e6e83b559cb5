"""TinyBERT's task-specific distillation (Jiao et al. 2020; the release's task_distill.py) inside `bert-jax finetune`:
a BERT student (the general TinyBERT, objectives/tinybert.py) learns a teacher fine-tuned on the same task, in the
release's two stages, each a `finetune` run (the second's --init is the first's workdir: its last checkpoint):

  objective.stage=intermediate  the embedding, hidden-state and attention losses of objectives/tinybert_losses.py
                                against the teacher's task model (the release: 20 epochs at lr 5e-5 on GLUE)
  objective.stage=prediction    the soft cross-entropy between the student's and the teacher's logits at temperature
                                T (objective.temperature, the release's 1), averaged over the rows and the classes as
                                the release's soft_cross_entropy; a regression task's squared error between them

The teacher (objective.teacher) is a fine-tuning run's workdir (its newest checkpoint), one of its steps, or a
`convert --from-hf` output of a BERT task model, with the student's labels; it runs frozen inside the compiled step,
sharded like the student (bert_jax/train/frozen.py). The release's data augmentation (data_augmentation.py: words
replaced by a masked LM's guesses or GloVe neighbours) is `bert-jax augment` (bert_jax/augment.py), read here
through task.augmented. Without a teacher this is the classification objective. Evaluation scores the student on
the task's dev split, as classification does.
"""

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from bert_jax.errors import UserError
from bert_jax.objectives import (
  settings as settings_lib,
  teacher as teacher_lib,
  tinybert_losses,
  training_loss,
)
from bert_jax.objectives.classification import Classification, ClassificationSettings

STAGES = ("intermediate", "prediction")


@dataclasses.dataclass(frozen=True)
class TaskDistillationSettings(ClassificationSettings):
  """config.objective of tinybert_task."""
  teacher: str = ""  # a fine-tuning run's workdir, W/checkpoints/STEP or a `convert --from-hf` task model
  stage: str = "intermediate"  # intermediate (layers) or prediction (logits), the release's two stages
  temperature: float = 1.0  # the prediction stage's softmax temperature

  def check(self) -> None:
    super().check()
    if self.stage not in STAGES:
      raise UserError(f"objective.stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
    settings_lib.check_interval(self, "temperature", "(0, inf)")


class TaskDistillation(Classification):
  FAMILIES: ClassVar[tuple[str, ...] | None] = ("bert",)
  SETTINGS: ClassVar[type[TaskDistillationSettings]] = TaskDistillationSettings  # type: ignore[assignment]
  settings: TaskDistillationSettings

  def __init__(self, config: Any):
    super().__init__(config)
    o = self.settings
    self.teacher = tinybert_losses.find_teacher(o.teacher)
    if self.teacher is not None:
      teacher = self.teacher.model_config
      if teacher.get("head") != config.model.head or teacher.get("num_labels") != config.model.num_labels:
        raise UserError(f"objective.teacher is a {teacher.get('head')} model with {teacher.get('num_labels')} "
                        f"outputs; the teacher must be fine-tuned on this task ({config.model.num_labels} outputs)")
      if o.stage == "intermediate":
        tinybert_losses.check_pair(config.model, teacher, "tinybert_task")
    self.teacher_model = teacher_lib.module(self.teacher)

  @property
  def frozen_source(self) -> teacher_lib.Source | None:
    return self.teacher

  def forward(self, model, params, batch: dict, rngs: dict | None = None, frozen: Any = None) -> tuple[dict, dict]:
    if frozen is None or self.teacher_model is None:
      return super().forward(model, params, batch, rngs)
    inputs = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    if self.settings.stage == "intermediate":
      _, states, scores = tinybert_losses.collect(model, params, inputs, rngs)
      _, teacher_states, teacher_scores = tinybert_losses.collect(self.teacher_model, frozen, inputs)
      sums, _ = tinybert_losses.intermediate_sums(self.config.model, params, (states, scores),
                                                  (teacher_states, teacher_scores), batch["attention_mask"],
                                                  batch["weight"])
      return sums, dict(sums)
    logits_BC = model.apply({"params": params}, *inputs, rngs=rngs)["logits"].astype(jnp.float32)
    teacher_BC = jax.lax.stop_gradient(self.teacher_model.apply({"params": frozen}, *inputs)["logits"])
    soft_B = prediction_loss(logits_BC, teacher_BC.astype(jnp.float32), self.settings.temperature, self.regression)
    correct_B = (jnp.argmax(logits_BC, -1) == jnp.argmax(teacher_BC, -1)).astype(jnp.float32)
    soft = jnp.sum(soft_B * batch["weight"])
    return {"soft": soft}, {"soft": soft, "agreement": jnp.sum(correct_B * batch["weight"])}

  def counts(self, batch: dict) -> dict:
    """classification's (the loss without the teacher), and with one the rows of the prediction stage or the
    element counts of the intermediate stage's terms."""
    counts = super().counts(batch)
    rows = jnp.sum(batch["weight"])
    if self.teacher is not None and self.settings.stage == "prediction":
      counts["soft"] = rows
    elif self.teacher is not None:
      length, heads = batch["input_ids"].shape[1], self.config.model.num_heads
      counts.update(hidden=rows * length * self.config.model.fit_size, attention=rows * heads * length * length)
    return counts

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    if self.teacher is None:
      return super().summarize(sums, metrics, counts)
    result = {"loss": float(training_loss({t: float(v) for t, v in sums.items()},
                                          {t: float(v) for t, v in counts.items()}))}
    result.update({f"{term}_loss": float(sums[term]) / max(float(counts[term]), 1.0) for term in sums})
    if "agreement" in metrics:
      result["teacher_agreement"] = float(metrics["agreement"]) / max(float(counts["soft"]), 1.0)
    return result


def prediction_loss(student_BC: jax.Array, teacher_BC: jax.Array, temperature: float, regression: bool) -> jax.Array:
  """Per row [B]: the release's soft_cross_entropy(student / T, teacher / T) (-softmax(teacher / T) .
  log_softmax(student / T), its mean over the classes), or the squared error of a regression's score."""
  if regression:
    return (student_BC[:, 0] - teacher_BC[:, 0]) ** 2
  targets_BC = jax.nn.softmax(teacher_BC / temperature, axis=-1)
  return -jnp.mean(targets_BC * jax.nn.log_softmax(student_BC / temperature, axis=-1), axis=-1)
