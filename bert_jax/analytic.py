"""Closed-form costs from a config's sizes: matrix-product FLOPs per training token and the activation
rows that tensor parallelism all-reduces, per model family.

FLOPs count every matrix product of the forward pass of one sequence (2 FLOPs per multiply-add),
times 3 for training (backward = 2 x forward), divided by data.seq_len: the convention of MFU. They
leave out elementwise work (norms, softmax, activations, dropout, the optimizer) and remat's recompute.
"""

from typing import Any, Callable

from bert_jax.errors import UserError


def _bert(config: Any) -> tuple[float, float]:
  m = config.model
  L, P = config.data.seq_len, config.objective.max_predictions
  H, F, V = m.hidden_size, m.intermediate_size, m.vocab_size
  E = m.embedding_size or H
  applications = m.num_layers * m.inner_group_num
  layer = 8 * L * H * H + 4 * L * L * H + 4 * L * H * F  # q, k, v, out; scores, context; two FFN matrices
  forward = applications * layer
  forward += 2 * L * E * H if m.embedding_projection else 0
  forward += 2 * H * H if m.pooler else 0
  forward += 2 * H * 2 if m.sentence_head != "none" else 0
  forward += 2 * P * H * E + 2 * P * E * V  # MLM transform and tied decoder, at the P predicted positions
  return forward, 4 * applications * L


def _xlnet(config: Any) -> tuple[float, float]:
  m = config.model
  L, P = config.data.seq_len, config.objective.num_predict
  H, F, V = m.hidden_size, m.intermediate_size, m.vocab_size
  R = 2 * L  # relative distances L .. 1 - L (no memory during training)
  positions = 2 * R * H * H
  content = 8 * L * H * H + 2 * L * L * H + 2 * L * R * H + 2 * L * 2 * H + 2 * L * L * H
  query = 4 * P * H * H + 2 * P * L * H + 2 * P * R * H + 2 * P * 2 * H + 2 * P * L * H
  ffn = 4 * (L + P) * H * F
  # the model returns the query stream: the last layer's content stream only feeds its keys and values
  unused = 4 * L * H * H + 4 * L * L * H + 2 * L * R * H + 2 * L * 2 * H + 4 * L * H * F
  forward = m.num_layers * (positions + content + query + ffn) - unused + 2 * P * H * V
  return forward, 4 * (m.num_layers * (L + P) - L)


def _t5(config: Any) -> tuple[float, float]:
  m = config.model
  Li, Lt = config.data.seq_len, config.objective.targets_length
  D, A, F, V = m.d_model, m.num_heads * m.d_kv, m.d_ff, m.vocab_size
  mlp_in = 2 if m.feed_forward_proj.startswith("gated") else 1

  def attention(q_len: int, kv_len: int) -> int:
    return 2 * q_len * D * A + 4 * kv_len * D * A + 4 * q_len * kv_len * A + 2 * q_len * A * D

  def mlp(length: int) -> int:
    return 2 * length * D * F * (mlp_in + 1)

  encoder = m.num_layers * (attention(Li, Li) + mlp(Li))
  decoder = m.num_decoder_layers * (attention(Lt, Lt) + attention(Lt, Li) + mlp(Lt))
  forward = encoder + decoder + 2 * Lt * D * V
  # encoder sublayers and decoder sublayers reduce their outputs forward and backward; the cross-attention
  # keys and values reduce the gradient of the encoder output once more (backward only)
  rows = 4 * m.num_layers * Li + m.num_decoder_layers * (6 * Lt + Li)
  return forward, rows


FAMILIES: dict[str, Callable[[Any], tuple[float, float]]] = {"bert": _bert, "xlnet": _xlnet, "t5": _t5}


def _family(config: Any) -> Callable[[Any], tuple[float, float]]:
  family = config.model.get("family", None)
  if family not in FAMILIES:
    raise UserError(f"no analytic cost model for model.family={family!r}; known: {', '.join(FAMILIES)}")
  return FAMILIES[family]


def flops_per_token(config: Any) -> float:
  """3 x forward matrix-product FLOPs of one sequence / data.seq_len."""
  forward, _ = _family(config)(config)
  return 3.0 * forward / config.data.seq_len


def tensor_parallel_rows(config: Any) -> float:
  """Rows of [rows, d_model] activations all-reduced over the tensor axis per sequence and training step
  (forward and backward): each sublayer whose output projection contracts a tensor-sharded dimension
  (heads or mlp) sums partial outputs forward and the gradient of its input backward."""
  _, rows = _family(config)(config)
  return float(rows)


def model_width(config: Any) -> int:
  m = config.model
  return m.get("hidden_size", None) or m.d_model
