"""TinyBERT's intermediate-layer losses (Jiao et al. 2020; the release's general_distill.py and task_distill.py), shared
by its general distillation (objectives/tinybert.py) and its task-specific one (objectives/tinybert_task.py).

For a student of M layers and a teacher of N (N a multiple of M), student layer m takes teacher layer g(m) = m N / M
(the release's uniform mapping; 4 -> 12: 3, 6, 9, 12) and the embeddings take the embeddings:

  hidden     sum over the M + 1 pairs (embeddings, then each layer's output) of the mean squared error between the
             student's states projected to the teacher's width by its fit_dense (models/bert.py) and the teacher's
  attention  sum over the M mapped layers of the mean squared error between the attention logits q k^T / sqrt(K)
             per head, before the softmax, with the logits of padding keys set to 0 in both (the release adds -10000
             there and then zeroes every logit <= -100, which sets those and any real logit as low)

Each mean is over every element of the batch's rows, padding positions included, as the release's MSELoss; a row of
weight 0 (one that only fills a batch) counts nowhere. The models sow the states and logits when applied with the
"intermediates" collection mutable (an unscanned BERT encoder: models/bert.py). The teacher runs without a gradient.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from bert_jax import models
from bert_jax.errors import UserError
from bert_jax.models import bert
from bert_jax.objectives import teacher as teacher_lib

LOW_SCORE = -1e2  # the release's threshold: logits at or below it count as masked


def teacher_layers(student: int, teacher: int) -> list[int]:
  """The teacher layer (1-based; 0 is the embeddings) each student layer m = 1 .. M learns from: m N / M."""
  if student < 1 or teacher % student:
    raise UserError(f"TinyBERT maps student layer m to teacher layer m x N / M: the teacher's {teacher} layers must "
                    f"be a multiple of the student's {student} (model.num_layers)")
  return [m * teacher // student for m in range(1, student + 1)]


def find_teacher(path: str) -> teacher_lib.Source | None:
  """objective.teacher (None when empty) with its layers unscanned, the layout whose encoder sows what the losses
  read."""
  if not path:
    return None
  found = teacher_lib.find(path)
  model_config = ml_collections.ConfigDict(found.model_config.to_dict())
  model_config.scan_layers = False
  return teacher_lib.Source(model_config, found.params_path)


def check_pair(student: Any, teacher: Any, name: str) -> None:
  """One-line errors for a student (config.model) and teacher (its config.model) the losses cannot compare."""
  if models.family(teacher) is not bert:  # the student's family is checked with the objective's (FAMILIES)
    raise UserError(f"objective {name} distills from a BERT teacher (BERT, RoBERTa, ALBERT's encoder); the teacher "
                    f"is a {teacher.get('family')} model")
  if student.scan_layers:
    raise UserError(f"objective {name} reads every layer's states; set --config.model.scan_layers=false")
  for model, who in ((student, "student"), (teacher, "teacher")):
    if model.share != "none" or model.embedding_projection or model.inner_group_num != 1:
      raise UserError(f"objective {name} reads one block per layer: the {who} shares layers or projects its "
                      "embeddings (ALBERT)")
  if teacher.vocab_size != student.vocab_size:
    raise UserError(f"the teacher's vocabulary has {teacher.vocab_size} ids and model.vocab_size is "
                    f"{student.vocab_size}; train the student with the teacher's tokenizer and vocabulary size")
  if teacher.num_heads != student.num_heads:
    raise UserError(f"TinyBERT compares attention head by head: the teacher has {teacher.num_heads} heads; set "
                    f"--config.model.num_heads={teacher.num_heads}")
  if student.fit_size != teacher.hidden_size:
    raise UserError(f"the student's fit_dense projects to the teacher's width {teacher.hidden_size}; set "
                    f"--config.model.fit_size={teacher.hidden_size}")
  teacher_layers(student.num_layers, teacher.num_layers)


def collect(model: Any, params: Any, inputs: tuple, rngs: dict | None = None) -> tuple[dict, list, list]:
  """The model's outputs, its hidden states [B, L, D] (embeddings, then each layer) and attention logits
  [B, N, L, L] (each layer)."""
  outputs, state = model.apply({"params": params}, *inputs, rngs=rngs, mutable=["intermediates"])
  encoder = state["intermediates"]["encoder"]
  depth = sum(1 for key in encoder if key.startswith("attention_"))
  scores = [encoder[f"attention_{k}"]["self"]["scores"][0] for k in range(depth)]
  return outputs, list(encoder["hidden_states"]), scores


def intermediate_sums(student_cfg: Any, params: dict, student: tuple[list, list], teacher: tuple[list, list],
                      attention_mask_BL: jax.Array, weight_B: jax.Array) -> tuple[dict, dict]:
  """(sums, counts) of the hidden and attention terms: summed squared errors over the mapped pairs, and each
  pair's element count (so that sums / counts is the release's sum of per-pair means)."""
  states, scores = student
  teacher_states, teacher_scores = jax.tree_util.tree_map(jax.lax.stop_gradient, teacher)
  mapped = teacher_layers(len(scores), len(teacher_scores))
  fit = bert.fit_dense(bert.make_config(student_cfg))
  rows_B = weight_B.astype(jnp.float32)
  hidden = jnp.float32(0.0)
  for k, t in enumerate([0, *mapped]):
    fitted_BLF = jnp.asarray(fit.apply({"params": params["fit_dense"]}, states[k]), jnp.float32)
    hidden += jnp.sum(jnp.sum((fitted_BLF - teacher_states[t].astype(jnp.float32)) ** 2, axis=(1, 2)) * rows_B)
  keys_B11S = attention_mask_BL.astype(bool)[:, None, None, :]
  attention = jnp.float32(0.0)
  for k, t in enumerate(mapped):
    s_BNLS, t_BNLS = scores[k], teacher_scores[t - 1]
    s_BNLS = jnp.where(keys_B11S & (s_BNLS > LOW_SCORE), s_BNLS, 0.0)
    t_BNLS = jnp.where(keys_B11S & (t_BNLS > LOW_SCORE), t_BNLS, 0.0)
    attention += jnp.sum(jnp.sum((s_BNLS - t_BNLS) ** 2, axis=(1, 2, 3)) * rows_B)
  rows = jnp.sum(rows_B)
  _, length, width = teacher_states[0].shape
  heads = scores[0].shape[1]
  return ({"hidden": hidden, "attention": attention},
          {"hidden": rows * length * width, "attention": rows * heads * length * length})
