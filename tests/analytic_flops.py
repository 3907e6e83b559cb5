"""The tests' oracle for bert_jax.flops: closed-form costs from a config's sizes, written per family by hand.

forward(config) -> (matrix-product FLOPs of the forward pass of one sequence (2 per multiply-add), rows of
[rows, hidden_size] activations all-reduced over the tensor axis per sequence and training step). A sublayer
whose output projection contracts a tensor-sharded dimension (heads or mlp) sums its partial outputs forward
and the gradient of its input backward. Elementwise work and remat's recompute are left out.
"""

from typing import Any


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
  K = m.mem_len + L  # keys: the memory carried from the last batch, then the segment
  R = K + L  # relative distances K .. 1 - L
  positions = 2 * R * H * H
  content = 4 * L * H * H + 4 * K * H * H + 2 * L * K * H + 2 * L * R * H + 2 * L * 2 * H + 2 * L * K * H
  query = 4 * P * H * H + 2 * P * K * H + 2 * P * R * H + 2 * P * 2 * H + 2 * P * K * H
  ffn = 4 * (L + P) * H * F
  # the model returns the query stream: the last layer's content stream only feeds its keys and values
  unused = 4 * L * H * H + 4 * L * K * H + 2 * L * R * H + 2 * L * 2 * H + 4 * L * H * F
  forward = m.num_layers * (positions + content + query + ffn) - unused + 2 * P * H * V
  # the last layer's keys and values still take the gradient of its input h (backward), and every layer's keys
  # and values take it for the memory's rows too (the concatenation is their one input; stop-gradient drops it after)
  return forward, 4 * (m.num_layers * (L + P) - L) + L + m.num_layers * m.mem_len


def _t5(config: Any) -> tuple[float, float]:
  m = config.model
  Li, Lt = config.data.seq_len, config.objective.targets_length
  D, A, F, V = m.hidden_size, m.num_heads * m.head_dim, m.intermediate_size, m.vocab_size
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


FAMILIES = {"bert": _bert, "xlnet": _xlnet, "t5": _t5}


def flops_per_token(config: Any) -> float:
  """3 x forward matrix-product FLOPs of one sequence / data.seq_len."""
  return 3.0 * FAMILIES[config.model.family](config)[0] / config.data.seq_len


def tensor_all_reduce_elements(config: Any) -> float:
  """Rows all-reduced over the tensor axis per sequence and training step, times hidden_size."""
  m = config.model
  return float(FAMILIES[m.family](config)[1] * m.hidden_size)
