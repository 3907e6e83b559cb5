"""One attention core for every family but XLNet: softmax(scale * q k^T + bias, where the mask allows) v, by the
implementation `model.attention` names.

  xla                    the products written out (`layers.einsum`): float32 logits, masked with finfo.min, float32
                         softmax, dropout on the probabilities; the reference every parity test runs
  dot_product_attention  jax.nn.dot_product_attention: cuDNN's fused kernel on a GPU where cuDNN takes the call
                         (bfloat16 / float16, head width a multiple of 8 up to 128), jax's XLA lowering elsewhere
  splash                 the Pallas TPU splash-attention kernel under shard_map over the mesh axes of `batch` and
                         `heads`; off TPU the Pallas interpreter runs it (slow: for checking numbers)
  auto                   on the mesh's platform, per call: splash on TPU, dot_product_attention (cuDNN) on GPU,
                         where the call allows it; xla otherwise

Neither fused kernel has dropout on the probabilities, and splash takes no additive bias (T5's relative positions)
and no per-example mask (UniLM's): `resolve` picks what runs a call and refuses an explicit choice the model cannot
take (one UserError line). Splash's lengths are multiples of 128 and it has no KV cache: under splash the other calls
(an init trace's short example inputs, step-by-step decoding, as MaxText's decoding) run xla.

`Mask` says which keys each query sees, in the parts the kernels take: real keys (padding), a full mask per example,
causal order, packed examples (segment ids). `SelfAttention` is the BERT-layout block around the core (BERT,
RoBERTa, ALBERT, ELECTRA, SpanBERT, UniLM, BART); GPT-2 and T5 keep their own projections.
"""

from collections.abc import Callable
import dataclasses
from typing import Any, Literal

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from bert_jax.errors import UserError
from bert_jax.models import layers
from bert_jax.models.dropout import Dropout

IMPLEMENTATIONS = ("xla", "dot_product_attention", "splash", "auto")
SPLASH_BLOCKS = (512, 256, 128)  # the largest that divides a length is its block; lengths are multiples of 128
HALF = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
ACTIVATION_AXES = ("batch", "length", "heads", "kv")


@flax.struct.dataclass
class Mask:
  """Which keys each query sees: every part given must allow it. key_BS: the real keys (1 = a real token);
  full_BLS: a boolean [B, L, S] mask per example (UniLM's); causal: query i sees keys up to i + query_offset (None:
  0; a KV cache's index when decoding); q_segment_BL, kv_segment_BS: packed examples, a query sees the keys of its
  own nonzero segment id (0 = padding)."""
  key_BS: jax.Array | None = None
  full_BLS: jax.Array | None = None
  causal: bool = flax.struct.field(pytree_node=False, default=False)
  query_offset: jax.Array | None = None
  q_segment_BL: jax.Array | None = None
  kv_segment_BS: jax.Array | None = None

  @property
  def decoding(self) -> bool:
    return self.query_offset is not None

  def dense(self, length: int, source_length: int) -> jax.Array:
    """Boolean [B or 1, 1, L, S]."""
    mask = jnp.ones((1, 1, length, source_length), bool)
    if self.key_BS is not None:
      mask = mask & self.key_BS.astype(bool)[:, None, None, :]
    if self.full_BLS is not None:
      mask = mask & self.full_BLS.astype(bool)[:, None]
    if self.causal:
      first = 0 if self.query_offset is None else self.query_offset
      mask = mask & (jnp.arange(source_length)[None, :] <= first + jnp.arange(length)[:, None])[None, None]
    if self.q_segment_BL is not None:
      assert self.kv_segment_BS is not None  # segments() gives both
      q_BL1, kv_B1S = self.q_segment_BL[:, :, None], self.kv_segment_BS[:, None, :]
      mask = mask & ((q_BL1 == kv_B1S) & (kv_B1S > 0))[:, None]
    return mask


def padding(attention_mask_BL: jax.Array) -> Mask:
  """[B, L] of 1/0: every query sees the real keys."""
  return Mask(key_BS=attention_mask_BL)


def from_attention_mask(mask: jax.Array) -> Mask:
  """A [B, L] padding mask (1 = a real token), or a [B, L, L] / [B, 1, L, L] mask (1 = the query may see the key)."""
  if mask.ndim == 2:
    return padding(mask)
  return Mask(full_BLS=mask if mask.ndim == 3 else mask[:, 0])


def segments(q_segment_BL: jax.Array, kv_segment_BS: jax.Array, causal: bool = False) -> Mask:
  return Mask(q_segment_BL=q_segment_BL, kv_segment_BS=kv_segment_BS, causal=causal)


def check_name(implementation: str) -> None:
  if implementation not in IMPLEMENTATIONS:
    raise UserError(f"model.attention must be one of {', '.join(IMPLEMENTATIONS)}, got '{implementation}'")


def resolve(implementation: str, mask: Mask, has_bias: bool, dropout: bool, length: int, source_length: int,
            head_dim: int, dtype: Any, on: str) -> str:
  """What runs a call: xla, dot_product_attention or splash. `dropout`: dropout on the probabilities is on (rate
  above 0, training); `on`: the platform. An explicit fused choice that the model cannot take (dropout, a bias, a mask
  per example) is a UserError; splash runs the calls whose lengths are multiples of 128 and that are not KV-cache
  decoding steps, the others (an init trace's short example inputs, step-by-step decoding) run xla."""
  check_name(implementation)
  if implementation == "xla":
    return "xla"
  if implementation == "auto":
    if dropout or mask.decoding:
      return "xla"
    if on == "tpu" and _splash_takes(mask, has_bias, length, source_length):
      return "splash"
    if _cudnn_takes(on, head_dim, dtype, length, source_length):
      return "dot_product_attention"
    return "xla"
  if dropout:
    raise UserError(f"model.attention={implementation} has no dropout on the attention probabilities: set the model's "
                    "attention dropout to 0 (model.attention_dropout; T5: model.dropout), or use model.attention=auto, "
                    "which runs xla while it is on")
  if implementation == "splash":
    if has_bias:
      raise UserError("model.attention=splash takes no additive attention bias (T5's relative positions); use "
                      "model.attention=dot_product_attention or auto")
    if mask.full_BLS is not None:
      raise UserError("model.attention=splash takes no attention mask per example (UniLM's); use "
                      "model.attention=dot_product_attention or auto")
    if not _splash_takes(mask, has_bias, length, source_length):
      return "xla"
  return implementation


def _splash_takes(mask: Mask, has_bias: bool, length: int, source_length: int) -> bool:
  return (not has_bias and mask.full_BLS is None and not mask.decoding and length % 128 == 0
          and source_length % 128 == 0)


def _cudnn_takes(on: str, head_dim: int, dtype: Any, length: int, source_length: int) -> bool:
  """cuDNN's flash attention (jax/_src/cudnn/fused_attention_stablehlo.py, check_is_flash_attention): half precision,
  head width a multiple of 8 up to 128 (256 from Hopper on), and in training even lengths beside a bias, which the
  mask always is there (_dot_product_attention passes it): an odd length (T5-large's 1821 targets at seq 8192) runs
  XLA's lowering."""
  even = length % 2 == 0 and source_length % 2 == 0
  return on in ("gpu", "cuda") and jnp.dtype(dtype) in HALF and head_dim % 8 == 0 and head_dim <= 128 and even


def attend(q_BLNK: jax.Array, k_BSNK: jax.Array, v_BSNK: jax.Array, mask: Mask, *, bias_BNLS: jax.Array | None = None,
           scale: float | None = None, dropout_rate: float = 0.0, deterministic: bool = True,
           implementation: str = "xla") -> jax.Array:
  """Attention of each query over the keys `mask` lets it see: [B, L, N, K] in v's dtype.

  scale: the logits' factor (None: 1 / sqrt(K)); bias_BNLS: added to the logits (dims 0 and 1 may be 1). With
  dropout on (rate above 0, not deterministic) call it inside a module's compact method: the dropout is a submodule of
  the caller (`Dropout_0`), drawing the caller's dropout stream as before the core was shared."""
  length, source_length, head_dim = q_BLNK.shape[1], k_BSNK.shape[1], q_BLNK.shape[-1]
  dropout = dropout_rate > 0.0 and not deterministic
  chosen = resolve(implementation, mask, bias_BNLS is not None, dropout, length, source_length, head_dim,
                   v_BSNK.dtype, layers.platform())
  if chosen == "splash":
    out_BLNK = _splash(q_BLNK, k_BSNK, v_BSNK, mask, head_dim ** -0.5 if scale is None else scale)
  elif chosen == "dot_product_attention":
    out_BLNK = _dot_product_attention(q_BLNK, k_BSNK, v_BSNK, mask, bias_BNLS, scale)
  else:
    drop = (lambda p: Dropout(dropout_rate)(p, deterministic=False)) if dropout else (lambda p: p)
    out_BLNK = _xla(q_BLNK, k_BSNK, v_BSNK, mask, bias_BNLS, scale, drop)
  return layers.constrain(out_BLNK, ACTIVATION_AXES)


def _xla(q_BLNK, k_BSNK, v_BSNK, mask: Mask, bias_BNLS, scale, dropout: Callable):
  logits_BNLS = layers.einsum("blnk,bsnk->bnls", q_BLNK, k_BSNK, preferred_element_type=jnp.float32)
  if scale is None:
    logits_BNLS = logits_BNLS / np.sqrt(q_BLNK.shape[-1]).astype(np.float32)
  elif scale != 1.0:
    logits_BNLS = logits_BNLS * np.float32(scale)
  if bias_BNLS is not None:
    logits_BNLS = logits_BNLS + bias_BNLS.astype(jnp.float32)
  logits_BNLS = jnp.where(mask.dense(q_BLNK.shape[1], k_BSNK.shape[1]), logits_BNLS, jnp.finfo(jnp.float32).min)
  probs_BNLS = jax.nn.softmax(logits_BNLS, axis=-1).astype(v_BSNK.dtype)
  probs_BNLS = dropout(probs_BNLS)
  return layers.einsum("bnls,bsnk->blnk", probs_BNLS, v_BSNK)


def _dot_product_attention(q_BLNK, k_BSNK, v_BSNK, mask: Mask, bias_BNLS, scale):
  """jax.nn.dot_product_attention; cuDNN's wants the mask at its full [B, 1, L, S] and takes causal order itself."""
  (batch, length, _, head_dim), source_length = q_BLNK.shape, k_BSNK.shape[1]
  cudnn = _cudnn_takes(layers.platform(), head_dim, v_BSNK.dtype, length, source_length)
  implementation: Literal["cudnn"] | None = "cudnn" if cudnn else None
  causal = implementation == "cudnn" and mask.causal and not mask.decoding and length == source_length
  mask_B1LS = (dataclasses.replace(mask, causal=False) if causal else mask).dense(length, source_length)
  if implementation == "cudnn":
    mask_B1LS = jnp.broadcast_to(mask_B1LS, (batch, 1, length, source_length))
  return jax.nn.dot_product_attention(q_BLNK, k_BSNK, v_BSNK, bias=bias_BNLS, mask=mask_B1LS, scale=scale,
                                      is_causal=causal, implementation=implementation)


def _splash(q_BLNK, k_BSNK, v_BSNK, mask: Mask, scale: float):
  """The splash kernel per example (vmap) over [N, L, K], in shard_map over the mesh axes of `batch` and `heads`
  when the model runs on a mesh. Padding is segment ids (every query in 1, real keys in 1, padding keys in 0)."""
  from jax.experimental.pallas.ops.tpu.splash_attention import (
    splash_attention_kernel as kernels,
    splash_attention_mask as masks,
  )

  length, source_length = q_BLNK.shape[1], k_BSNK.shape[1]
  q_segment_BL, kv_segment_BS = mask.q_segment_BL, mask.kv_segment_BS
  if mask.key_BS is not None:
    key_BS = mask.key_BS.astype(jnp.int32)
    if q_segment_BL is None:
      q_segment_BL, kv_segment_BS = jnp.ones(q_BLNK.shape[:2], jnp.int32), key_BS
    else:
      assert kv_segment_BS is not None  # segments() gives both
      kv_segment_BS = kv_segment_BS * key_BS
  interpret = layers.platform() != "tpu"
  q_block, kv_block = _block(length), _block(source_length)
  blocks = kernels.BlockSizes(block_q=q_block, block_kv=kv_block, block_kv_compute=kv_block, block_q_dkv=q_block,
                              block_kv_dkv=kv_block, block_kv_dkv_compute=kv_block, block_q_dq=q_block,
                              block_kv_dq=kv_block)

  def local(q_BNLK, k_BNSK, v_BNSK, q_segment_BL, kv_segment_BS):
    shape = (length, source_length)
    head_mask = masks.CausalMask(shape) if mask.causal else masks.FullMask(shape)
    kernel = kernels.make_splash_mha(masks.MultiHeadMask((head_mask,) * q_BNLK.shape[1]), block_sizes=blocks,
                                     head_shards=1, q_seq_shards=1, interpret=interpret)
    ids = None if q_segment_BL is None else kernels.SegmentIds(q_segment_BL, kv_segment_BS)
    return jax.vmap(kernel)(q_BNLK, k_BNSK, v_BNSK, segment_ids=ids)

  to_heads_first = lambda x: jnp.transpose(x, (0, 2, 1, 3))
  q_BNLK, k_BNSK, v_BNSK = to_heads_first(q_BLNK * scale), to_heads_first(k_BSNK), to_heads_first(v_BSNK)
  mesh = jax.sharding.get_abstract_mesh()
  if not mesh.empty and mesh.size > 1:
    heads_spec = nn.logical_to_mesh_axes(("batch", "heads", None, None))
    ids_spec = None if q_segment_BL is None else nn.logical_to_mesh_axes(("batch", None))
    local = jax.shard_map(local, mesh=mesh, in_specs=(heads_spec,) * 3 + (ids_spec,) * 2, out_specs=heads_spec,
                          check_vma=False)
  return to_heads_first(local(q_BNLK, k_BNSK, v_BNSK, q_segment_BL, kv_segment_BS))


def _block(length: int) -> int:
  return next(block for block in SPLASH_BLOCKS if length % block == 0)


class SelfAttention(nn.Module):
  """Multi-head attention with biases (BERT layout): q/k/v kernels [embed, heads, kv], out [heads, kv, embed], the
  1 / sqrt(K) scaling. Given `memory_BSD`, keys and values come from it (an encoder-decoder's cross-attention).
  Applied with the "intermediates" collection mutable, it sows its logits q k^T / sqrt(K) [B, N, L, S] before the
  mask as `scores` (objectives/tinybert_losses.py reads them)."""
  num_heads: int
  head_dim: int
  dropout: float = 0.0
  init_std: float = 0.02
  dtype: Any = jnp.float32
  implementation: str = "xla"  # model.attention

  @nn.compact
  def __call__(self, x_BLD, mask: Mask, deterministic: bool, memory_BSD=None):
    memory_BSD = x_BLD if memory_BSD is None else memory_BSD

    def projection(name):
      return nn.DenseGeneral(
          (self.num_heads, self.head_dim), dtype=self.dtype, param_dtype=jnp.float32, **layers.KERNEL_PRODUCT,
          kernel_init=layers.partitioned(layers.initializer(self.init_std), ("embed", "heads", "kv")),
          bias_init=layers.partitioned(nn.initializers.zeros, ("heads", "kv")), name=name)

    q_BLNK = layers.constrain(projection("query")(x_BLD), ACTIVATION_AXES)
    k_BSNK = layers.constrain(projection("key")(memory_BSD), ACTIVATION_AXES)
    v_BSNK = layers.constrain(projection("value")(memory_BSD), ACTIVATION_AXES)
    if self.is_mutable_collection("intermediates"):  # what TinyBERT's distillation reads: the pre-softmax logits
      self.sow("intermediates", "scores", layers.einsum("blnk,bsnk->bnls", q_BLNK, k_BSNK,
                                                        preferred_element_type=jnp.float32) / np.sqrt(self.head_dim))
    out_BLNK = attend(q_BLNK, k_BSNK, v_BSNK, mask, dropout_rate=self.dropout, deterministic=deterministic,
                      implementation=self.implementation)
    return nn.DenseGeneral(
        x_BLD.shape[-1], axis=(-2, -1), dtype=self.dtype, param_dtype=jnp.float32, **layers.KERNEL_PRODUCT,
        kernel_init=layers.partitioned(layers.initializer(self.init_std), ("heads", "kv", "embed")),
        bias_init=layers.partitioned(nn.initializers.zeros, ("embed",)), name="out")(out_BLNK)
