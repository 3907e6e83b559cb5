"""GPT-2 (Radford et al. 2019), as transformers' GPT2LMHeadModel: a pre-LN decoder with learned positions.

Token and position embeddings, dropout, then layers of LayerNorm -> causal self-attention -> residual and LayerNorm
-> dense, GELU (tanh form: gelu_new) -> dense -> residual, a final LayerNorm (ln_f), and logits from the tied token
embedding. The two projections that write into the residual stream (attention out, mlp c_proj) start with
std initializer_range / sqrt(2 * num_layers), the paper's scaling of residual layers (HF's _init_weights).

A query sees the keys at or before its position that attention_mask_BL marks real. With decode=True the layers keep
a KV cache in the "cache" collection (flax's decoding pattern): `init_cache` makes it for a batch and a length, and
each call writes its tokens at the cache's index and attends to everything cached so far; positions are then the
caller's (position_ids_BL). Decoding runs the unscanned layout (`to_layout`).

Parameter layout (unscanned): wte/embedding [vocab, embed], wpe/embedding [positions, embed], layers_k/{ln_1,
attention/{query, key, value: kernel [embed, heads, kv]; out: kernel [heads, kv, embed]}, ln_2, mlp/{c_fc, c_proj}},
ln_f. With scan_layers the layers_k subtrees are stacked under `layers`.

A task model (model.head classification or span, `GPT2ForTask`) keeps these names and adds transformers' heads:
GPT2ForSequenceClassification's `score` (ours `classifier`, no bias, no dropout) on the last real token's state,
or GPT2ForQuestionAnswering's `qa_outputs` on every state.
"""

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bert_jax.errors import UserError
from bert_jax.models import attention, heads, layers, shared
from bert_jax.models.dropout import Dropout
from bert_jax.models.family import Family, Framing


@dataclasses.dataclass(frozen=True)
class GPT2Config(shared.Settings):
  """GPT-2 small (124M); the other sizes override it (configs/gpt2_*.py)."""
  vocab_size: int = 50257
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  max_position: int = 1024
  hidden_act: str = "gelu_new"
  dropout: float = 0.1  # HF resid_pdrop: after each residual branch
  embedding_dropout: float = 0.1  # HF embd_pdrop
  attention_dropout: float = 0.1  # HF attn_pdrop
  layer_norm_eps: float = 1e-5
  initializer_range: float = 0.02
  pad_token_id: int = 0  # the id padding rows hold (GPT-2 has no padding token: any id, masked out)


def make_config(model_cfg: Any) -> GPT2Config:
  return shared.from_config(GPT2Config, model_cfg, "gpt2")


def max_sequence_length(cfg: GPT2Config) -> int:
  return cfg.max_position


def validate(cfg: GPT2Config) -> None:
  shared.check(cfg, ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position"),
               divisible=[("hidden_size", "num_heads")], rates=("dropout", "embedding_dropout", "attention_dropout"),
               choices={"hidden_act": layers.ACTIVATIONS})


def _normal(std: float, axes: tuple[str | None, ...]):
  return layers.partitioned(nn.initializers.normal(std), axes)


def _residual_std(cfg: GPT2Config) -> float:
  return cfg.initializer_range / math.sqrt(2 * cfg.num_layers)


class CausalSelfAttention(nn.Module):
  """Multi-head causal self-attention with biases; with `decode`, over the KV cache."""
  cfg: GPT2Config
  deterministic: bool

  @nn.compact
  def __call__(self, x_BLD, key_mask_BL, decode: bool = False):
    cfg = self.cfg
    head_dim = cfg.hidden_size // cfg.num_heads

    def projection(name):
      return nn.DenseGeneral((cfg.num_heads, head_dim), dtype=cfg.compute_dtype, param_dtype=jnp.float32,
                             **layers.KERNEL_PRODUCT,
                             kernel_init=_normal(cfg.initializer_range, ("embed", "heads", "kv")),
                             bias_init=layers.partitioned(nn.initializers.zeros, ("heads", "kv")), name=name)

    axes = attention.ACTIVATION_AXES
    q_BLNK = layers.constrain(projection("query")(x_BLD), axes)
    k_BSNK = layers.constrain(projection("key")(x_BLD), axes)
    v_BSNK = layers.constrain(projection("value")(x_BLD), axes)
    key_mask_BS = key_mask_BL.astype(bool)
    first = None
    if decode and self.has_variable("cache", "cached_key"):
      k_BSNK, v_BSNK, key_mask_BS, first = self._cached(k_BSNK, v_BSNK, key_mask_BS)
    elif decode:  # init: make the cache for inputs of this shape; compute as without it
      self._cached(k_BSNK, v_BSNK, key_mask_BS)
    mask = attention.Mask(key_BS=key_mask_BS, causal=True, query_offset=first)
    out_BLNK = attention.attend(q_BLNK, k_BSNK, v_BSNK, mask, dropout_rate=cfg.attention_dropout,
                                deterministic=self.deterministic, implementation=cfg.attention)
    return nn.DenseGeneral(cfg.hidden_size, axis=(-2, -1), dtype=cfg.compute_dtype, param_dtype=jnp.float32,
                           **layers.KERNEL_PRODUCT,
                           kernel_init=_normal(_residual_std(cfg), ("heads", "kv", "embed")),
                           bias_init=layers.partitioned(nn.initializers.zeros, ("embed",)), name="out")(out_BLNK)

  def _cached(self, k_BLNK, v_BLNK, key_mask_BL):
    """The cache with this call's keys, values and key mask written at its index: (keys, values, mask, index)."""
    initialized = self.has_variable("cache", "cached_key")
    key = self.variable("cache", "cached_key", jnp.zeros, k_BLNK.shape, k_BLNK.dtype)
    value = self.variable("cache", "cached_value", jnp.zeros, v_BLNK.shape, v_BLNK.dtype)
    mask = self.variable("cache", "cached_mask", jnp.zeros, key_mask_BL.shape, bool)
    index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
    if not initialized:
      return None
    first = index.value
    key.value = jax.lax.dynamic_update_slice(key.value, k_BLNK.astype(key.value.dtype), (0, first, 0, 0))
    value.value = jax.lax.dynamic_update_slice(value.value, v_BLNK.astype(value.value.dtype), (0, first, 0, 0))
    mask.value = jax.lax.dynamic_update_slice(mask.value, key_mask_BL, (0, first))
    index.value = first + k_BLNK.shape[1]
    return key.value, value.value, mask.value, first


class MLP(nn.Module):
  cfg: GPT2Config
  deterministic: bool

  @nn.compact
  def __call__(self, x_BLD):
    cfg = self.cfg
    h_BLF = nn.Dense(cfg.intermediate_size, dtype=cfg.compute_dtype, param_dtype=jnp.float32,
                     **layers.KERNEL_PRODUCT,
                     kernel_init=_normal(cfg.initializer_range, ("embed", "mlp")),
                     bias_init=layers.partitioned(nn.initializers.zeros, ("mlp",)), name="c_fc")(x_BLD)
    h_BLF = layers.constrain(layers.activation(cfg.hidden_act)(h_BLF), ("batch", "length", "mlp"))
    return nn.Dense(cfg.hidden_size, dtype=cfg.compute_dtype, param_dtype=jnp.float32,
                    **layers.KERNEL_PRODUCT,
                    kernel_init=_normal(_residual_std(cfg), ("mlp", "embed")),
                    bias_init=layers.partitioned(nn.initializers.zeros, ("embed",)), name="c_proj")(h_BLF)


class Block(nn.Module):
  """x + attention(ln_1(x)), then x + mlp(ln_2(x)), each branch through dropout; the (carry, out) form of nn.scan."""
  cfg: GPT2Config
  deterministic: bool

  @nn.compact
  def __call__(self, x_BLD, key_mask_BL, decode: bool = False):
    cfg = self.cfg
    dropout = lambda y: Dropout(cfg.dropout)(y, deterministic=self.deterministic)
    h_BLD = layers.layer_norm(cfg.layer_norm_eps, cfg.compute_dtype, "ln_1")(x_BLD)
    x_BLD = x_BLD + dropout(CausalSelfAttention(cfg, self.deterministic, name="attention")(h_BLD, key_mask_BL, decode))
    h_BLD = layers.layer_norm(cfg.layer_norm_eps, cfg.compute_dtype, "ln_2")(x_BLD)
    x_BLD = x_BLD + dropout(MLP(cfg, self.deterministic, name="mlp")(h_BLD))
    return layers.constrain(x_BLD, ("batch", "length", "embed")), None


class GPT2(nn.Module):
  """The language model: logits [B, L, vocab] for input_ids_BL (attention_mask_BL: 1 = a real token)."""
  cfg: GPT2Config
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids_BL, attention_mask_BL=None, position_ids_BL=None, decode: bool = False):
    x_BLD, wte = _transformer(self.cfg, self.deterministic, input_ids_BL, attention_mask_BL, position_ids_BL, decode)
    return wte.attend(x_BLD)


class GPT2ForTask(nn.Module):
  """The fine-tuning model ({"logits": [B, num_labels]} or {"start_logits", "end_logits": [B, L]}); see the module
  docstring. Rows are padded on the right; `token_type_ids_BL` is accepted and unused (GPT-2 has no token types)."""
  cfg: GPT2Config
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids_BL, token_type_ids_BL=None, attention_mask_BL=None):
    cfg = self.cfg
    x_BLD, _ = _transformer(cfg, self.deterministic, input_ids_BL, attention_mask_BL)
    if cfg.head == "span":
      return heads.span_logits(x_BLD, cfg)
    x_BD = heads.state_at_last(x_BLD, heads.real_tokens(input_ids_BL, attention_mask_BL))
    score = layers.dense(cfg.num_labels, ("embed", None), cfg.initializer_range, cfg.compute_dtype, "classifier",
                         use_bias=False)
    return {"logits": score(x_BD).astype(jnp.float32)}


def _transformer(cfg: GPT2Config, deterministic: bool, input_ids_BL, attention_mask_BL=None, position_ids_BL=None,
                 decode: bool = False) -> tuple[jax.Array, layers.Embed]:
  """The final states [B, L, D] (after ln_f) and the token table, from modules made in the calling module."""
  if decode and (cfg.scan_layers or cfg.remat != "none"):
    raise UserError("decoding with a KV cache runs the unscanned layout without remat; build the model with "
                    "scan_layers=False and remat=none")
  if attention_mask_BL is None:
    attention_mask_BL = jnp.ones_like(input_ids_BL)
  if position_ids_BL is None:
    position_ids_BL = jnp.broadcast_to(jnp.arange(input_ids_BL.shape[1]), input_ids_BL.shape)
  wte = layers.Embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"), cfg.initializer_range, cfg.compute_dtype,
                     name="wte")
  wpe = layers.Embed(cfg.max_position, cfg.hidden_size, (None, "embed"), cfg.initializer_range, cfg.compute_dtype,
                     name="wpe")
  x_BLD = wte(input_ids_BL) + wpe(position_ids_BL)
  x_BLD = Dropout(cfg.embedding_dropout)(x_BLD, deterministic=deterministic)
  x_BLD = layers.constrain(x_BLD, ("batch", "length", "embed"))
  if cfg.scan_layers:
    for stack in shared.layer_stack(Block, cfg, deterministic, cfg.num_layers, (nn.broadcast,)):
      x_BLD, _ = stack(x_BLD, attention_mask_BL)
  else:
    for layer in shared.layer_stack(Block, cfg, deterministic, cfg.num_layers, ()):
      x_BLD, _ = layer(x_BLD, attention_mask_BL, *((True,) if decode else ()))
  return layers.layer_norm(cfg.layer_norm_eps, cfg.compute_dtype, "ln_f")(x_BLD), wte


def build(cfg: GPT2Config, deterministic: bool = True) -> GPT2 | GPT2ForTask:
  return GPT2(cfg, deterministic) if cfg.head == "pretraining" else GPT2ForTask(cfg, deterministic)


def build_encoder(cfg: GPT2Config) -> GPT2 | None:
  """GPT2Model as Hugging Face counts it: the output layer is the tied token embedding, so the same parameters (for
  the pretraining model; a task model's count is its own)."""
  return GPT2(cfg) if cfg.head == "pretraining" else None


def example_inputs(cfg: GPT2Config, batch: int = 1, length: int = 8) -> dict:
  ids = jnp.ones((batch, length), jnp.int32)
  if cfg.head != "pretraining":
    return {"input_ids_BL": ids, "token_type_ids_BL": jnp.zeros_like(ids), "attention_mask_BL": ids}
  return {"input_ids_BL": ids, "attention_mask_BL": ids}


def init_cache(model: GPT2, batch: int, length: int) -> Any:
  """The zeroed KV cache of the unscanned `model` for `batch` rows of up to `length` tokens."""
  ids = jnp.ones((batch, length), jnp.int32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), ids, decode=True)["cache"])
  return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def to_layout(params: dict, cfg: GPT2Config, scanned: bool) -> dict:
  """Converts a parameter tree between the unscanned (layers_k) and scanned (layers) layouts."""
  return shared.to_layout(params, {"layers": [f"layers_{k}" for k in range(cfg.num_layers)]}, scanned)


def finetune(c: Any, pretrained: Any) -> None:
  """GPT-1's (Radford et al. 2018, section 4.1; GPT-2 published none): lr 6.25e-5, warm-up over 0.2% of the steps."""
  if c.task.name != "squad":
    c.optimizer.update(learning_rate=6.25e-5)
    c.task.update(warmup_proportion=0.002)


FAMILY = Family(
    name="gpt2", objective="causal_lm", converter="bert_jax.convert.gpt2", hf_types={"gpt2": "gpt2_config"},
    # GPT-2 frames nothing: the end-of-text that ends documents joins a pair
    framings={"gpt2": Framing("$A", "$A {eod} $B")}, framing="gpt2", finetune=finetune,
    bench_references={"causal_lm": "bert_jax.bench.torch_generative:CausalLM"},
    hf_eod_ids=("bos_token_id", "eos_token_id"))  # GPT2Config's defaults are the published vocabulary's 50256
