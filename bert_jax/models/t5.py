"""T5 v1.0 and v1.1: a pre-norm encoder-decoder with RMSNorm and bucketed relative position biases.

v1.0: ReLU feed-forward, output logits from the shared embedding with the hidden_size**-0.5 scaling.
v1.1: gated GELU feed-forward (`feed_forward_proj='gated-gelu'`), an untied LM head, no dropout.

Attention has no biases and no 1/sqrt(d) scaling (the initialization absorbs it). Each stack computes
its relative position bias once (the table lives in the stack) and shares it with every layer.
Packed rows: `*_segment_ids` (0 = padding, k > 0 = the k-th example of the row) keep attention inside
an example; relative positions are differences of indices, which are the same inside a packed example
as in the example alone, so packing changes no number.

Parameter layout (unscanned): token_embedder/embedding, encoder/{relpos_bias, layers_k/{pre_attention_norm,
attention, pre_mlp_norm, mlp}, final_norm}, decoder/{relpos_bias, layers_k/{pre_self_attention_norm,
self_attention, pre_cross_attention_norm, cross_attention, pre_mlp_norm, mlp}, final_norm, logits_dense}
(logits_dense only when untied). Attention: query/key/value kernels [embed, heads, kv], out [heads, kv,
embed]; mlp: wi (or wi_0 gate, wi_1 linear) [embed, mlp], wo [mlp, embed]. With scan_layers the
layers_k subtrees are stacked on a leading `layers` axis under `layers`; `to_layout` converts.
"""

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from bert_jax.errors import UserError
from bert_jax.models import attention, layers, shared
from bert_jax.models.dropout import Dropout
from bert_jax.models.family import Family, Framing

FEED_FORWARD = {"relu": ("relu", False), "gated-gelu": ("gelu_new", True), "gated-relu": ("relu", True)}


@dataclasses.dataclass(frozen=True)
class T5Config(shared.Settings):
  """T5-small v1.0; v1.1 and the other sizes override it (bert_jax/recipes/pretraining.py, configs/)."""
  vocab_size: int = 32128
  hidden_size: int = 512
  head_dim: int = 64
  intermediate_size: int = 2048
  num_layers: int = 6
  num_decoder_layers: int = 6
  num_heads: int = 8
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  feed_forward_proj: str = "relu"  # relu (v1.0) | gated-gelu (v1.1) | gated-relu
  tie_word_embeddings: bool = True  # v1.0: logits from the shared embedding, scaled by hidden_size**-0.5
  dropout: float = 0.1
  layer_norm_eps: float = 1e-6
  pad_token_id: int = 0  # also the decoder's start token
  eos_token_id: int = 1
  REFUSED_ATTENTION = {"splash": "splash takes no additive bias, and T5's self-attention adds its relative position "
                                 "bias; use model.attention=dot_product_attention, or auto"}
  FORMER_NAMES = {"d_model": "hidden_size", "d_kv": "head_dim", "d_ff": "intermediate_size"}  # before issue 35


def make_config(model_cfg: Any) -> T5Config:
  return shared.from_config(T5Config, model_cfg, "t5")


def validate(cfg: T5Config) -> None:
  shared.check(cfg, ("vocab_size", "hidden_size", "head_dim", "intermediate_size", "num_layers", "num_decoder_layers",
                     "num_heads", "relative_attention_num_buckets", "relative_attention_max_distance"),
               choices={"feed_forward_proj": FEED_FORWARD})
  if cfg.head != "pretraining":
    raise UserError(f"model.head={cfg.head} is not a T5 head: T5 fine-tunes text-to-text with its pretraining model; "
                    "keep model.head=pretraining")
  if cfg.relative_attention_num_buckets < 4:
    raise UserError(f"model.relative_attention_num_buckets must be at least 4, got "
                    f"{cfg.relative_attention_num_buckets}")
  if not 0 <= cfg.pad_token_id < cfg.vocab_size or not 0 <= cfg.eos_token_id < cfg.vocab_size:
    raise UserError("model.pad_token_id and model.eos_token_id must be ids below model.vocab_size")


def relative_position_bucket(relative_position, bidirectional: bool, num_buckets: int, max_distance: int):
  """Mesh TensorFlow's buckets for (key position - query position): exact below num_buckets/2 (per
  direction), logarithmic up to max_distance, one bucket beyond."""
  buckets = jnp.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    buckets += (relative_position > 0).astype(relative_position.dtype) * num_buckets
    distance = jnp.abs(relative_position)
  else:
    distance = jnp.maximum(-relative_position, 0)
  max_exact = num_buckets // 2
  log_ratio = (jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact)
               / math.log(max_distance / max_exact) * (num_buckets - max_exact))
  large = jnp.minimum(max_exact + log_ratio.astype(relative_position.dtype), num_buckets - 1)
  return buckets + jnp.where(distance < max_exact, distance, large)


class RelativePositionBias(nn.Module):
  """The [1, N, L, S] bias (queries L, keys S) from an [R, N] table of buckets R."""
  cfg: T5Config
  bidirectional: bool

  @nn.compact
  def __call__(self, q_len: int, k_len: int):
    cfg = self.cfg
    table_RN = self.param(
        "rel_embedding", layers.partitioned(nn.initializers.normal(cfg.hidden_size ** -0.5), ("relpos", "heads")),
        (cfg.relative_attention_num_buckets, cfg.num_heads), jnp.float32)
    relative_LS = jnp.arange(k_len)[None, :] - jnp.arange(q_len)[:, None]
    buckets_LS = relative_position_bucket(relative_LS, self.bidirectional, cfg.relative_attention_num_buckets,
                                          cfg.relative_attention_max_distance)
    bias_LSN = jnp.take(table_RN, buckets_LS, axis=0)
    return jnp.transpose(bias_LSN, (2, 0, 1))[None].astype(cfg.compute_dtype)


class RMSNorm(nn.Module):
  """Scale-only normalization without mean subtraction, computed in float32."""
  cfg: T5Config

  @nn.compact
  def __call__(self, x_BLD):
    scale_D = self.param("scale", layers.partitioned(nn.initializers.ones, ("embed",)), (x_BLD.shape[-1],),
                         jnp.float32)
    normalize = functools.partial(rms_normalize, eps=self.cfg.layer_norm_eps, dtype=self.cfg.compute_dtype)
    return layers.recomputed(normalize)(x_BLD, scale_D)


def rms_normalize(x_BLD, scale_D, eps: float, dtype):
  x = x_BLD.astype(jnp.float32)
  x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)
  return (x * scale_D).astype(dtype)


def _kernel(init_std: float, axes: tuple[str, ...]):
  return layers.partitioned(nn.initializers.normal(init_std), axes)


class Attention(nn.Module):
  """Multi-head attention without biases or scaling; `bias_1NLS` and `mask` come from the stack."""
  cfg: T5Config
  deterministic: bool

  @nn.compact
  def __call__(self, x_BLD, memory_BSD, bias_1NLS, mask: attention.Mask):
    cfg = self.cfg

    def projection(name, std):
      return nn.DenseGeneral((cfg.num_heads, cfg.head_dim), use_bias=False, dtype=cfg.compute_dtype,
                             **layers.KERNEL_PRODUCT,
                             param_dtype=jnp.float32, kernel_init=_kernel(std, ("embed", "heads", "kv")),
                             name=name)

    activation_axes = attention.ACTIVATION_AXES
    q_BLNK = layers.constrain(projection("query", (cfg.hidden_size * cfg.head_dim) ** -0.5)(x_BLD), activation_axes)
    k_BSNK = layers.constrain(projection("key", cfg.hidden_size ** -0.5)(memory_BSD), activation_axes)
    v_BSNK = layers.constrain(projection("value", cfg.hidden_size ** -0.5)(memory_BSD), activation_axes)
    out_BLNK = attention.attend(q_BLNK, k_BSNK, v_BSNK, mask, bias_BNLS=bias_1NLS, scale=1.0,
                                dropout_rate=cfg.dropout, deterministic=self.deterministic,
                                implementation=cfg.attention)
    return nn.DenseGeneral(cfg.hidden_size, axis=(-2, -1), use_bias=False, dtype=cfg.compute_dtype,
                           **layers.KERNEL_PRODUCT,
                           param_dtype=jnp.float32,
                           kernel_init=_kernel((cfg.num_heads * cfg.head_dim) ** -0.5, ("heads", "kv", "embed")),
                           name="out")(out_BLNK)


class MLP(nn.Module):
  """wi -> activation (times wi_1 when gated) -> dropout -> wo."""
  cfg: T5Config
  deterministic: bool

  @nn.compact
  def __call__(self, x_BLD):
    cfg = self.cfg
    act_name, gated = FEED_FORWARD[cfg.feed_forward_proj]

    def dense(features, axes, std, name):
      return nn.DenseGeneral(features, use_bias=False, dtype=cfg.compute_dtype, param_dtype=jnp.float32,
                             **layers.KERNEL_PRODUCT,
                             kernel_init=_kernel(std, axes), name=name)

    act = layers.activation(act_name)
    if gated:
      h_BLF = (act(dense(cfg.intermediate_size, ("embed", "mlp"), cfg.hidden_size ** -0.5, "wi_0")(x_BLD))
               * dense(cfg.intermediate_size, ("embed", "mlp"), cfg.hidden_size ** -0.5, "wi_1")(x_BLD))
    else:
      h_BLF = act(dense(cfg.intermediate_size, ("embed", "mlp"), cfg.hidden_size ** -0.5, "wi")(x_BLD))
    h_BLF = layers.constrain(h_BLF, ("batch", "length", "mlp"))
    h_BLF = Dropout(cfg.dropout)(h_BLF, deterministic=self.deterministic)
    return dense(cfg.hidden_size, ("mlp", "embed"), cfg.intermediate_size ** -0.5, "wo")(h_BLF)


class EncoderLayer(nn.Module):
  cfg: T5Config
  deterministic: bool

  @nn.compact
  def __call__(self, x_BLD, bias_1NLL, mask: attention.Mask):
    dropout = lambda y: Dropout(self.cfg.dropout)(y, deterministic=self.deterministic)
    h_BLD = RMSNorm(self.cfg, name="pre_attention_norm")(x_BLD)
    x_BLD = x_BLD + dropout(Attention(self.cfg, self.deterministic, name="attention")(h_BLD, h_BLD, bias_1NLL, mask))
    h_BLD = RMSNorm(self.cfg, name="pre_mlp_norm")(x_BLD)
    x_BLD = x_BLD + dropout(MLP(self.cfg, self.deterministic, name="mlp")(h_BLD))
    return layers.constrain(x_BLD, ("batch", "length", "embed")), None


class DecoderLayer(nn.Module):
  cfg: T5Config
  deterministic: bool

  @nn.compact
  def __call__(self, y_BTD, encoded_BSD, bias_1NTT, self_mask: attention.Mask, cross_mask: attention.Mask):
    dropout = lambda y: Dropout(self.cfg.dropout)(y, deterministic=self.deterministic)
    h_BTD = RMSNorm(self.cfg, name="pre_self_attention_norm")(y_BTD)
    y_BTD = y_BTD + dropout(Attention(self.cfg, self.deterministic, name="self_attention")(
        h_BTD, h_BTD, bias_1NTT, self_mask))
    h_BTD = RMSNorm(self.cfg, name="pre_cross_attention_norm")(y_BTD)
    y_BTD = y_BTD + dropout(Attention(self.cfg, self.deterministic, name="cross_attention")(
        h_BTD, encoded_BSD, None, cross_mask))
    h_BTD = RMSNorm(self.cfg, name="pre_mlp_norm")(y_BTD)
    y_BTD = y_BTD + dropout(MLP(self.cfg, self.deterministic, name="mlp")(h_BTD))
    return layers.constrain(y_BTD, ("batch", "length", "embed")), None


class Encoder(nn.Module):
  cfg: T5Config
  deterministic: bool

  @nn.compact
  def __call__(self, x_BLD, segment_BL):
    cfg = self.cfg
    length = x_BLD.shape[1]
    bias_1NLL = RelativePositionBias(cfg, bidirectional=True, name="relpos_bias")(length, length)
    mask = attention.segments(segment_BL, segment_BL)
    x_BLD = Dropout(cfg.dropout)(x_BLD, deterministic=self.deterministic)
    for layer in shared.layer_stack(EncoderLayer, cfg, self.deterministic, cfg.num_layers, (nn.broadcast,) * 2):
      x_BLD, _ = layer(x_BLD, bias_1NLL, mask)
    x_BLD = RMSNorm(cfg, name="final_norm")(x_BLD)
    return Dropout(cfg.dropout)(x_BLD, deterministic=self.deterministic)


class Decoder(nn.Module):
  cfg: T5Config
  deterministic: bool

  @nn.compact
  def __call__(self, y_BTD, encoded_BSD, segment_BT, encoder_segment_BS, token_embedder: layers.Embed):
    cfg = self.cfg
    length = y_BTD.shape[1]
    bias_1NTT = RelativePositionBias(cfg, bidirectional=False, name="relpos_bias")(length, length)
    self_mask = attention.segments(segment_BT, segment_BT, causal=True)
    cross_mask = attention.segments(segment_BT, encoder_segment_BS)
    y_BTD = Dropout(cfg.dropout)(y_BTD, deterministic=self.deterministic)
    for layer in shared.layer_stack(DecoderLayer, cfg, self.deterministic, cfg.num_decoder_layers,
                                    (nn.broadcast,) * 4):
      y_BTD, _ = layer(y_BTD, encoded_BSD, bias_1NTT, self_mask, cross_mask)
    y_BTD = RMSNorm(cfg, name="final_norm")(y_BTD)
    y_BTD = Dropout(cfg.dropout)(y_BTD, deterministic=self.deterministic)
    if cfg.tie_word_embeddings:
      return token_embedder.attend(y_BTD * cfg.hidden_size ** -0.5)
    return nn.DenseGeneral(cfg.vocab_size, use_bias=False, dtype=cfg.compute_dtype, param_dtype=jnp.float32,
                           **layers.KERNEL_PRODUCT,
                           kernel_init=_kernel(cfg.hidden_size ** -0.5, ("embed", "vocab")),
                           name="logits_dense")(y_BTD)


class T5(nn.Module):
  """The encoder-decoder; `__call__` gives decoder logits [B, T, vocab]. Segment ids default to no padding."""
  cfg: T5Config
  deterministic: bool = True

  def setup(self):
    cfg = self.cfg
    self.token_embedder = layers.Embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"), 1.0,
                                       cfg.compute_dtype)
    self.encoder = Encoder(cfg, self.deterministic)
    self.decoder = Decoder(cfg, self.deterministic)

  def encode(self, encoder_input_tokens, encoder_segment_ids=None):
    segment_BL = _segments(encoder_input_tokens, encoder_segment_ids)
    x_BLD = layers.constrain(self.token_embedder(encoder_input_tokens), ("batch", "length", "embed"))
    return self.encoder(x_BLD, segment_BL)

  def decode(self, encoded, decoder_input_tokens, encoder_segment_ids=None, decoder_segment_ids=None,
             decoder_positions=None):
    """Decoder logits [B, T, vocab]. `decoder_positions` (tokens that keep their places in a longer text: MASS's
    fragment, objectives/mass.py) change nothing: the relative biases see distances, which a contiguous stretch
    keeps."""
    del decoder_positions
    encoder_segment_BS = _segments(encoded[..., 0], encoder_segment_ids)
    segment_BT = _segments(decoder_input_tokens, decoder_segment_ids)
    y_BTD = layers.constrain(self.token_embedder(decoder_input_tokens), ("batch", "length", "embed"))
    return self.decoder(y_BTD, encoded, segment_BT, encoder_segment_BS, self.token_embedder)

  def __call__(self, encoder_input_tokens, decoder_input_tokens, encoder_segment_ids=None,
               decoder_segment_ids=None):
    encoded_BLD = self.encode(encoder_input_tokens, encoder_segment_ids)
    return self.decode(encoded_BLD, decoder_input_tokens, encoder_segment_ids, decoder_segment_ids)


def _segments(tokens, segment_ids):
  return jnp.ones(tokens.shape, jnp.int32) if segment_ids is None else segment_ids


def build(cfg: T5Config, deterministic: bool = True) -> T5:
  return T5(cfg, deterministic)


def build_encoder(cfg: T5Config) -> None:
  """T5's published counts are for the whole encoder-decoder: no separate encoder count."""
  return None


def example_inputs(cfg: T5Config, batch: int = 1, length: int = 8) -> dict:
  ids = jnp.ones((batch, length), jnp.int32)
  return {"encoder_input_tokens": ids, "decoder_input_tokens": ids}


def to_layout(params: dict, cfg: T5Config, scanned: bool) -> dict:
  """Converts a parameter tree between the unscanned (layers_k) and scanned (layers) layouts."""
  stacks = {f"{stack}/layers": [f"{stack}/layers_{k}" for k in range(n)]
            for stack, n in (("encoder", cfg.num_layers), ("decoder", cfg.num_decoder_layers))}
  return shared.to_layout(params, stacks, scanned)


def finetune(c: Any, pretrained: Any) -> None:
  """T5 fine-tunes text to text (its paper: Adafactor at a constant 1e-3) with its pretraining model."""
  if c.task.name == "squad":
    return
  c.model.head = pretrained.model.head
  c.objective = ml_collections.ConfigDict({"name": "text_to_text", "targets_length": 8,
                                           "z_loss": pretrained.objective.get("z_loss", 0.0)})
  c.optimizer.update(name="adafactor", learning_rate=1e-3, schedule="constant", warmup_steps=0, weight_decay=0.0)


FAMILY = Family(
    name="t5", objective="span_corruption", converter="bert_jax.convert.t5", hf_types={"t5": "t5_config"},
    framings={"t5": Framing("$A {eos}", "$A {eos} $B {eos}")}, framing="t5", finetune=finetune, hf_sentinels=100,
    bench_references={"span_corruption": "bert_jax.bench.torch_generative:SpanCorruption"})
