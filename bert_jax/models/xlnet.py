"""XLNet: two-stream relative attention with Transformer-XL memory and relative segment encoding.

Each layer runs two streams with the same weights: the content stream h (every position, sees its own
token) and the query stream g (only at the predicted positions `target_positions_BP`, starts from the
learned mask embedding and never sees its own token). `perm_mask_BLL` follows Hugging Face: 1 (True)
at [b, i, j] means position i may not see position j. Memory from a previous segment (`mems_YBMD`,
one [B, M, D] per layer) is visible to every position and is never differentiated through.
`reversed_B` marks examples read backwards (bi_data): their relative distances change sign.

Parameter layout (unscanned): encoder/{word_embeddings/embedding [vocab, embed], mask_embedding
[embed], layer_k/{attention/{query, key, value, output, position} [embed, heads, kv], content_bias,
position_bias, segment_bias [heads, kv], segment_embedding [2, heads, kv], layer_norm},
ffn/{intermediate, output, layer_norm}}}, lm_bias [vocab] (the LM head is tied to the word
embeddings). With scan_layers the layer_k subtrees are stacked on a leading `layers` axis under
encoder/layers; `to_layout` converts between the two.

A task model (model.head classification or span, `XLNetForTask`) keeps the pretraining model's `encoder`
subtree under the same paths (lm_bias stays behind) and runs it without memory or permutation; it adds
`classifier/{dense, out_proj}` (HF's sequence_summary.summary and logits_proj) or `qa_outputs`.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bert_jax.errors import UserError
from bert_jax.models import heads, layers, shared
from bert_jax.models.dropout import Dropout
from bert_jax.models.family import Family, Framing


@dataclasses.dataclass(frozen=True)
class XLNetConfig(shared.Settings):
  """XLNet-base with the original pretraining's memory (mem_len 384, reuse_len 256)."""
  vocab_size: int = 32000
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  dropout: float = 0.1
  layer_norm_eps: float = 1e-12
  initializer_range: float = 0.02
  mem_len: int = 384  # states kept as memory for the next segment; 0: the model returns no memory
  reuse_len: int = 256  # leading tokens whose states become that memory; 0: the whole segment
  clamp_len: int = -1  # relative distances are clipped to [-clamp_len, clamp_len]; -1: never
  REFUSED_ATTENTION = {name: "XLNet's two-stream relative attention has a core of its own, written out in XLA; use "
                             "model.attention=xla or auto" for name in ("dot_product_attention", "splash")}

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads


def make_config(model_cfg: Any) -> XLNetConfig:
  return shared.from_config(XLNetConfig, model_cfg, "xlnet")


def validate(cfg: XLNetConfig) -> None:
  shared.check(cfg, ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size"),
               divisible=[("hidden_size", "num_heads")], choices={"hidden_act": layers.ACTIVATIONS})
  if cfg.hidden_size % 2:
    raise UserError(f"model.hidden_size={cfg.hidden_size} must be even (sinusoidal relative positions)")
  if cfg.mem_len < 0 or cfg.reuse_len < 0:
    raise UserError(f"model.mem_len and model.reuse_len must be >= 0, got {cfg.mem_len} and {cfg.reuse_len}")


def relative_distances(qlen: int, klen: int, reversed_B: jax.Array, clamp_len: int) -> jax.Array:
  """[B, klen + qlen] distances klen, klen - 1, ..., 1 - qlen (negated for reversed examples)."""
  forward_R = jnp.arange(klen, -qlen, -1, dtype=jnp.float32)
  distances_BR = jnp.where(reversed_B[:, None], -forward_R, forward_R)
  return jnp.clip(distances_BR, -clamp_len, clamp_len) if clamp_len > 0 else distances_BR


def sinusoid(distances_BR: jax.Array, dim: int) -> jax.Array:
  inv_freq = 1.0 / (10000 ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
  angles = distances_BR[..., None] * inv_freq  # [B, R, D / 2]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def shift_relative(scores_BNLR: jax.Array, klen: int) -> jax.Array:
  """Content stream: [b, n, i, p] over distances klen - p -> [b, n, i, j] at distance (mlen + i) - j."""
  b, n, q, r = scores_BNLR.shape
  shifted = scores_BNLR.reshape(b, n, r, q)[:, :, 1:].reshape(b, n, q, r - 1)
  return shifted[..., :klen]


def gather_relative(scores_BNPR: jax.Array, positions_BP: jax.Array, qlen: int, klen: int) -> jax.Array:
  """Query stream: row m sits at segment position positions_BP[b, m]; same result as shift_relative."""
  index_BPS = qlen - positions_BP[:, :, None] + jnp.arange(klen)[None, None, :]
  return jnp.take_along_axis(scores_BNPR, index_BPS[:, None], axis=-1)


class RelativeAttention(nn.Module):
  """Relative attention (content bias u, position bias v, segment bias and embedding), post-LN."""
  cfg: XLNetConfig
  deterministic: bool

  def setup(self):
    cfg = self.cfg
    shape, axes = (cfg.hidden_size, cfg.num_heads, cfg.head_dim), ("embed", "heads", "kv")
    normal = layers.initializer(cfg.initializer_range)
    kernel = lambda name: self.param(name, layers.partitioned(normal, axes), shape, jnp.float32)
    self.query, self.key, self.value, self.output, self.position = (
        kernel(n) for n in ("query", "key", "value", "output", "position"))
    bias = lambda name: self.param(name, layers.partitioned(normal, ("heads", "kv")), shape[1:], jnp.float32)
    self.content_bias, self.position_bias, self.segment_bias = (
        bias(n) for n in ("content_bias", "position_bias", "segment_bias"))
    self.segment_embedding = self.param("segment_embedding", layers.partitioned(normal, (None, "heads", "kv")),
                                        (2,) + shape[1:], jnp.float32)
    self.layer_norm = layers.layer_norm(cfg.layer_norm_eps, cfg.compute_dtype, "layer_norm")
    self.dropout = Dropout(cfg.dropout)

  def _project(self, x, kernel):
    return layers.constrain(layers.einsum("bld,dnk->blnk", x, kernel, preferred_element_type=self.cfg.compute_dtype),
                            ("batch", "length", "heads", "kv"))

  def _attend(self, q_BLNK, k_BSNK, v_BSNK, kr_BRNK, shift, different_BLS, blocked_BLS):
    cfg = self.cfg
    dt = cfg.compute_dtype
    f32 = jnp.float32
    content_BNLS = layers.einsum("blnk,bsnk->bnls", q_BLNK + self.content_bias.astype(dt), k_BSNK,
                                 preferred_element_type=f32)
    position_BNLS = shift(layers.einsum("blnk,brnk->bnlr", q_BLNK + self.position_bias.astype(dt), kr_BRNK,
                                        preferred_element_type=f32))
    scores_BNLS = content_BNLS + position_BNLS
    if different_BLS is not None:
      segment_BNL2 = layers.einsum("blnk,tnk->bnlt", q_BLNK + self.segment_bias.astype(dt),
                                   self.segment_embedding, preferred_element_type=f32)
      scores_BNLS += jnp.where(different_BLS[:, None], segment_BNL2[..., 1:], segment_BNL2[..., :1])
    scores_BNLS = scores_BNLS / np.sqrt(cfg.head_dim)
    scores_BNLS = jnp.where(blocked_BLS[:, None], -1e30, scores_BNLS)
    probs_BNLS = self.dropout(jax.nn.softmax(scores_BNLS, axis=-1).astype(dt), deterministic=self.deterministic)
    return layers.einsum("bnls,bsnk->blnk", probs_BNLS, v_BSNK)

  def _post(self, x_BLD, attended_BLNK):
    out_BLD = layers.einsum("blnk,dnk->bld", attended_BLNK, self.output, preferred_element_type=self.cfg.compute_dtype)
    return self.layer_norm(x_BLD + self.dropout(out_BLD, deterministic=self.deterministic))

  def __call__(self, h_BLD, g_BPD, mem_BMD, ctx: dict):
    qlen = h_BLD.shape[1]
    cat_BSD = jnp.concatenate([mem_BMD.astype(h_BLD.dtype), h_BLD], axis=1)
    klen = cat_BSD.shape[1]
    k_BSNK, v_BSNK = self._project(cat_BSD, self.key), self._project(cat_BSD, self.value)
    kr_BRNK = layers.einsum("brd,dnk->brnk", ctx["positions_BRD"], self.position,
                            preferred_element_type=self.cfg.compute_dtype)
    h_attended = self._attend(self._project(h_BLD, self.query), k_BSNK, v_BSNK, kr_BRNK,
                              lambda s: shift_relative(s, klen), ctx["different_BLS"], ctx["blocked_h_BLS"])
    new_h_BLD = self._post(h_BLD, h_attended)
    if g_BPD is None:
      return new_h_BLD, None
    shift_g = lambda s: gather_relative(s, ctx["target_positions_BP"], qlen, klen)
    g_attended = self._attend(self._project(g_BPD, self.query), k_BSNK, v_BSNK, kr_BRNK, shift_g,
                              ctx["different_BPS"], ctx["blocked_g_BPS"])
    return new_h_BLD, self._post(g_BPD, g_attended)


class FeedForward(layers.PostLNFeedForward):
  """BERT's post-LN feed-forward block with a dropout after the activation too, as XLNet's PositionwiseFF."""
  inner_dropout: bool = True


class XLNetLayer(nn.Module):
  """Both streams through one attention and one feed-forward block; (carry, memory) form for nn.scan.

  The memory this layer hands to the next segment is its input h (the first reuse_len positions),
  appended to its old memory and cut to the last mem_len states.
  """
  cfg: XLNetConfig
  deterministic: bool

  @nn.compact
  def __call__(self, carry, mem_BMD, ctx: dict):
    cfg = self.cfg
    h_BLD, g_BPD = carry
    new_mem = None
    if cfg.mem_len > 0:
      reused_BLD = h_BLD[:, :cfg.reuse_len] if cfg.reuse_len > 0 else h_BLD
      kept_BMD = jnp.concatenate([mem_BMD.astype(h_BLD.dtype), reused_BLD], axis=1)[:, -cfg.mem_len:]
      new_mem = jax.lax.stop_gradient(kept_BMD)
    h_BLD, g_BPD = RelativeAttention(cfg, self.deterministic, name="attention")(h_BLD, g_BPD, mem_BMD, ctx)
    ffn = FeedForward(cfg, self.deterministic, name="ffn")
    h_BLD = layers.constrain(ffn(h_BLD), ("batch", "length", "embed"))
    if g_BPD is not None:
      g_BPD = layers.constrain(ffn(g_BPD), ("batch", "length", "embed"))
    return (h_BLD, g_BPD), new_mem


class XLNetEncoder(nn.Module):
  """The bare XLNet (Hugging Face's XLNetModel): returns the last layer's query stream at the
  predicted positions (content stream everywhere when no targets are given) and the new memory."""
  cfg: XLNetConfig
  deterministic: bool = True

  def setup(self):
    cfg = self.cfg
    self.word_embeddings = layers.Embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"),
                                        cfg.initializer_range, cfg.compute_dtype)
    self.mask_embedding = self.param("mask_embedding",
                                     layers.partitioned(layers.initializer(cfg.initializer_range), ("embed",)),
                                     (cfg.hidden_size,), jnp.float32)
    if cfg.scan_layers:  # the memory slices per layer (in_axes 0), the context is the same for every layer
      self.layers = shared.scan(XLNetLayer, cfg, cfg.num_layers, (0, nn.broadcast))(
          cfg, self.deterministic, name="layers")
    else:
      layer_cls = shared.remat(XLNetLayer, cfg)
      self.layer_list = [layer_cls(cfg, self.deterministic, name=f"layer_{k}") for k in range(cfg.num_layers)]
    self.dropout = Dropout(cfg.dropout)

  def _context(self, input_ids_BL, token_type_ids_BL, attention_mask_BL, perm_mask_BLL, target_positions_BP,
               reversed_B, mlen: int) -> dict:
    cfg = self.cfg
    b, qlen = input_ids_BL.shape
    klen = mlen + qlen
    blocked_BLL = jnp.zeros((b, qlen, qlen), bool)
    if perm_mask_BLL is not None:
      blocked_BLL |= perm_mask_BLL > 0
    if attention_mask_BL is not None:
      blocked_BLL |= (attention_mask_BL == 0)[:, None, :]
    blocked_BLS = jnp.concatenate([jnp.zeros((b, qlen, mlen), bool), blocked_BLL], axis=2)
    self_BLS = jnp.arange(klen)[None, None, :] == (mlen + jnp.arange(qlen))[None, :, None]
    reversed_B = jnp.zeros((b,), bool) if reversed_B is None else reversed_B.astype(bool)
    positions_BRD = sinusoid(relative_distances(qlen, klen, reversed_B, cfg.clamp_len), cfg.hidden_size)
    positions_BRD = layers.constrain(positions_BRD.astype(cfg.compute_dtype), ("batch", "relpos", "embed"))
    ctx = {"blocked_h_BLS": blocked_BLS & ~self_BLS,
           "positions_BRD": self.dropout(positions_BRD, deterministic=self.deterministic),
           "different_BLS": None, "different_BPS": None}
    if token_type_ids_BL is not None:
      keys_BS = jnp.concatenate([jnp.zeros((b, mlen), token_type_ids_BL.dtype), token_type_ids_BL], axis=1)
      ctx["different_BLS"] = token_type_ids_BL[:, :, None] != keys_BS[:, None, :]
    if target_positions_BP is not None:
      rows_BPS = jnp.broadcast_to(target_positions_BP[:, :, None], target_positions_BP.shape + (klen,))
      ctx["target_positions_BP"] = target_positions_BP
      ctx["blocked_g_BPS"] = jnp.take_along_axis(blocked_BLS, rows_BPS, axis=1)
      if ctx["different_BLS"] is not None:
        ctx["different_BPS"] = jnp.take_along_axis(ctx["different_BLS"], rows_BPS, axis=1)
    return ctx

  def __call__(self, input_ids_BL, token_type_ids_BL=None, attention_mask_BL=None, perm_mask_BLL=None,
               target_positions_BP=None, mems_YBMD=None, reversed_B=None):
    cfg = self.cfg
    b = input_ids_BL.shape[0]
    if mems_YBMD is None:
      mems_YBMD = jnp.zeros((cfg.num_layers, b, 0, cfg.hidden_size), cfg.compute_dtype)
    if target_positions_BP is not None:
      target_positions_BP = target_positions_BP.astype(jnp.int32)
    ctx = self._context(input_ids_BL, token_type_ids_BL, attention_mask_BL, perm_mask_BLL, target_positions_BP,
                        reversed_B, mems_YBMD.shape[2])
    h_BLD = self.dropout(self.word_embeddings(input_ids_BL), deterministic=self.deterministic)
    h_BLD = layers.constrain(h_BLD, ("batch", "length", "embed"))
    g_BPD = None
    if target_positions_BP is not None:
      g_BPD = jnp.broadcast_to(self.mask_embedding.astype(cfg.compute_dtype),
                               target_positions_BP.shape + (cfg.hidden_size,))
      g_BPD = self.dropout(g_BPD, deterministic=self.deterministic)
    if cfg.scan_layers:
      (h_BLD, g_BPD), new_mems = self.layers((h_BLD, g_BPD), mems_YBMD, ctx)
    else:
      new_mems = []
      for k, layer in enumerate(self.layer_list):
        (h_BLD, g_BPD), mem = layer((h_BLD, g_BPD), mems_YBMD[k], ctx)
        new_mems.append(mem)
      new_mems = jnp.stack(new_mems) if cfg.mem_len > 0 else None
    output = self.dropout(h_BLD if g_BPD is None else g_BPD, deterministic=self.deterministic)
    return output, new_mems


class XLNetLMHeadModel(nn.Module):
  """The pretraining model: the encoder and an LM head tied to the word embeddings with its own bias.

  Returns {'logits': [B, P, V] at target_positions_BP (or [B, L, V]), 'mems': [Y, B, M, D] or None}.
  """
  cfg: XLNetConfig
  deterministic: bool = True

  def setup(self):
    cfg = self.cfg
    self.encoder = XLNetEncoder(cfg, self.deterministic)
    self.lm_bias = self.param("lm_bias", layers.partitioned(nn.initializers.zeros, ("vocab",)), (cfg.vocab_size,),
                              jnp.float32)

  def __call__(self, input_ids_BL, token_type_ids_BL=None, attention_mask_BL=None, perm_mask_BLL=None,
               target_positions_BP=None, mems_YBMD=None, reversed_B=None):
    output, mems = self.encoder(input_ids_BL, token_type_ids_BL, attention_mask_BL, perm_mask_BLL,
                                target_positions_BP, mems_YBMD, reversed_B)
    logits = self.encoder.word_embeddings.attend(output) + self.lm_bias.astype(self.cfg.compute_dtype)
    return {"logits": logits, "mems": mems}


class XLNetForTask(nn.Module):
  """The fine-tuning model: the encoder (no memory, no permutation) and the head of Hugging Face's
  XLNetForSequenceClassification ({"logits": [B, num_labels]}: SequenceSummary "last" -> dense, tanh, dropout ->
  logits_proj) or XLNetForQuestionAnsweringSimple ({"start_logits", "end_logits": [B, L]}).

  HF's summary takes position -1, the <cls> that ends each row under left padding; this takes each row's last
  real token, so right-padded rows give the same logits as left-padded ones."""
  cfg: XLNetConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids_BL, token_type_ids_BL=None, attention_mask_BL=None):
    cfg = self.cfg
    encoder = XLNetEncoder(dataclasses.replace(cfg, mem_len=0), self.deterministic, name="encoder")
    x_BLD, _ = encoder(input_ids_BL, token_type_ids_BL, attention_mask_BL)
    if cfg.head == "span":
      return heads.span_logits(x_BLD, cfg)
    x_BD = heads.state_at_last(x_BLD, heads.real_tokens(input_ids_BL, attention_mask_BL))
    return {"logits": heads.ClassificationHead(cfg, "tanh", self.deterministic, input_dropout=False,
                                               name="classifier")(x_BD)}


def build(cfg: XLNetConfig, deterministic: bool = True) -> XLNetLMHeadModel | XLNetForTask:
  return XLNetLMHeadModel(cfg, deterministic) if cfg.head == "pretraining" else XLNetForTask(cfg, deterministic)


def build_encoder(cfg: XLNetConfig) -> XLNetEncoder:
  return XLNetEncoder(cfg)


def example_inputs(cfg: XLNetConfig, batch: int = 1, length: int = 8) -> dict:
  ids = jnp.ones((batch, length), jnp.int32)
  if cfg.head != "pretraining":
    return {"input_ids_BL": ids, "token_type_ids_BL": jnp.zeros_like(ids), "attention_mask_BL": ids}
  return {"input_ids_BL": ids, "token_type_ids_BL": jnp.zeros_like(ids),
          "perm_mask_BLL": jnp.zeros((batch, length, length), bool),
          "target_positions_BP": jnp.zeros((batch, 1), jnp.int32)}


def to_layout(params: dict, cfg: XLNetConfig, scanned: bool) -> dict:
  """Converts a parameter tree between the unscanned and scanned layouts (scanned=True: to scanned)."""
  return shared.to_layout(params, {"encoder/layers": [f"encoder/layer_{k}" for k in range(cfg.num_layers)]}, scanned)


FAMILY = Family(
    name="xlnet", objective="permutation_lm", converter="bert_jax.convert.xlnet", hf_types={"xlnet": "xlnet_config"},
    # A <sep> B <sep> <cls>: XLNet's <cls> at the end, with a token type of its own; padded on the left
    framings={"xlnet": Framing("$A {sep} {cls}:2", "$A {sep} $B:1 {sep}:1 {cls}:2", padding_side="left")},
    framing="xlnet", bench_references={"permutation_lm": "bert_jax.bench.torch_generative:PermutationLM"})
