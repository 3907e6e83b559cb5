"""Fine-tuning heads the encoder families share, as Hugging Face's task classes build them (model.head).

`ClassificationHead`: a summary vector -> [dropout] -> dense D -> activation -> dropout -> out_proj
(RobertaClassificationHead with tanh and ElectraClassificationHead with gelu over the first token; XLNet's
SequenceSummary + logits_proj over the last real token, without the first dropout). `span_logits`: one dense
of 2 on every position, the start and end logits of an answer span (the qa_outputs of ...ForQuestionAnswering).
`task_outputs` is either over a sequence output; `state_at_last` picks the summary vector of the families that
read the last real token (XLNet, GPT-2) or the last </s> (BART). The dropout is cfg.head_dropout
(model.classifier_dropout, else model.dropout); logits are float32.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bert_jax.models import layers
from bert_jax.models.dropout import Dropout


class ClassificationHead(nn.Module):
  """Logits [B, num_labels] of summary vectors x_BD. cfg holds hidden_size, num_labels, head_dropout,
  initializer_range and compute_dtype."""
  cfg: Any
  activation: str
  deterministic: bool
  input_dropout: bool = True

  @nn.compact
  def __call__(self, x_BD: jax.Array) -> jax.Array:
    cfg = self.cfg
    dropout = Dropout(cfg.head_dropout)
    if self.input_dropout:
      x_BD = dropout(x_BD, deterministic=self.deterministic)
    h_BD = layers.dense(cfg.hidden_size, ("embed", None), cfg.initializer_range, cfg.compute_dtype, "dense")(x_BD)
    h_BD = dropout(layers.activation(self.activation)(h_BD), deterministic=self.deterministic)
    logits_BC = layers.dense(cfg.num_labels, (None, None), cfg.initializer_range, cfg.compute_dtype, "out_proj")(h_BD)
    return logits_BC.astype(jnp.float32)


def task_outputs(x_BLD: jax.Array, cfg: Any, deterministic: bool, activation: str) -> dict:
  """cfg.head's outputs over a sequence output, from modules of the calling module: `span_logits`, or a
  `ClassificationHead` named classifier over the first token (RoBERTa: tanh, ELECTRA: gelu)."""
  if cfg.head == "span":
    return span_logits(x_BLD, cfg)
  return {"logits": ClassificationHead(cfg, activation, deterministic, name="classifier")(x_BLD[:, 0])}


def state_at_last(x_BLD: jax.Array, where_BL: jax.Array) -> jax.Array:
  """[B, D]: each row's state at its last position where `where_BL` holds (position 0 where it never does)."""
  last_B = jnp.max(jnp.where(where_BL, jnp.arange(where_BL.shape[1]), 0), axis=1)
  return jnp.take_along_axis(x_BLD, last_B[:, None, None], axis=1)[:, 0]


def real_tokens(input_ids_BL: jax.Array, attention_mask_BL: jax.Array | None) -> jax.Array:
  """[B, L] bool: the positions attention_mask_BL marks real (all, without one)."""
  return jnp.ones_like(input_ids_BL, bool) if attention_mask_BL is None else attention_mask_BL > 0


def span_logits(x_BLD: jax.Array, cfg: Any) -> dict:
  """{"start_logits", "end_logits": [B, L]} from a dense `qa_outputs` of the current module."""
  logits_BL2 = layers.dense(2, ("embed", None), cfg.initializer_range, cfg.compute_dtype, "qa_outputs")(x_BLD)
  logits_BL2 = logits_BL2.astype(jnp.float32)
  return {"start_logits": logits_BL2[..., 0], "end_logits": logits_BL2[..., 1]}
