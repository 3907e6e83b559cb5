"""TinyBERT's general distillation (Jiao et al. 2020; the release's general_distill.py): a BERT student, started at
random with its own sizes (TinyBERT-4L-312: 4 layers, width 312, 12 heads), learns a frozen BERT teacher's embedding
output, hidden states and attention logits on the pretraining corpus (objectives/tinybert_losses.py: the loss is
their sum, hidden + attention, as the release's rep_loss + att_loss). The inputs are masked_lm's (BERT's masked
sentence pairs, as the release's pregenerated data); the masked-LM and NSP labels play no part in the loss.

The teacher (objective.teacher: a run's workdir, one of its steps or a `convert --from-hf` output; objectives/
teacher.py) is a BERT with the student's vocabulary and heads, of a multiple of its depth, as wide as the student's
fit_dense projects (model.fit_size). The Trainer loads it, shards it like the student and passes it into the compiled
steps (bert_jax/train/frozen.py). Without a teacher the student trains on masked_lm's loss. The task-specific stage
that follows is objectives/tinybert_task.py, inside `bert-jax finetune`.
"""

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp

from bert_jax.objectives import teacher as teacher_lib, tinybert_losses, training_loss
from bert_jax.objectives.masked_lm import MaskedLM, MaskedLMSettings


@dataclasses.dataclass(frozen=True)
class TinyBertSettings(MaskedLMSettings):
  """config.objective of tinybert: masked_lm's data settings and the teacher."""
  teacher: str = ""  # a run's workdir, W/checkpoints/STEP or a `convert --from-hf` output; empty: masked LM alone


class TinyBert(MaskedLM):
  FAMILIES: ClassVar[tuple[str, ...] | None] = ("bert",)
  SETTINGS: ClassVar[type[TinyBertSettings]] = TinyBertSettings
  settings: TinyBertSettings

  def __init__(self, config: Any):
    super().__init__(config)
    self.teacher = tinybert_losses.find_teacher(self.settings.teacher)
    if self.teacher is not None:
      tinybert_losses.check_pair(config.model, self.teacher.model_config, "tinybert")
    self.teacher_model = teacher_lib.module(self.teacher)

  @property
  def frozen_source(self) -> teacher_lib.Source | None:
    return self.teacher

  def forward(self, model, params, batch: dict, rngs: dict | None = None, frozen: Any = None) -> tuple[dict, dict]:
    if frozen is None or self.teacher_model is None:
      return super().forward(model, params, batch, rngs)
    inputs = (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], batch["masked_positions"])
    _, states, scores = tinybert_losses.collect(model, params, inputs, rngs)
    _, teacher_states, teacher_scores = tinybert_losses.collect(self.teacher_model, frozen, inputs)
    rows_B = jnp.ones(batch["input_ids"].shape[:1], jnp.float32)
    sums, _ = tinybert_losses.intermediate_sums(self.config.model, params, (states, scores),
                                                (teacher_states, teacher_scores), batch["attention_mask"], rows_B)
    return sums, dict(sums)

  def counts(self, batch: dict) -> dict:
    """masked_lm's (the loss without the teacher), and with one the element counts of the hidden and attention
    terms."""
    counts = super().counts(batch)
    if self.teacher is not None:
      rows, length = batch["input_ids"].shape
      counts.update(hidden=jnp.float32(rows * length * self.config.model.fit_size),
                    attention=jnp.float32(rows * self.config.model.num_heads * length * length))
    return counts

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    if self.teacher is None:
      return super().summarize(sums, metrics, counts)
    result = {f"{term}_loss": float(sums[term]) / max(float(counts[term]), 1.0) for term in ("hidden", "attention")}
    return {"loss": float(training_loss({t: float(v) for t, v in sums.items()},
                                        {t: float(v) for t, v in counts.items()})), **result}
