"""Layers shared by the model families: attention, feed-forward, embeddings, activations.

Every parameter carries logical axis names (`vocab`, `embed`, `heads`, `kv`, `mlp`, `layers`);
`bert_jax.parallel` maps them to mesh axes with the rules in the config.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from bert_jax.models.dropout import Dropout

Dtype = jnp.dtype


def initializer(stddev: float) -> Callable:
  return nn.initializers.truncated_normal(stddev=stddev)


class LogicallyPartitioned(nn.LogicallyPartitioned):
  """Logical axis names without the sharding constraint flax adds when unboxing: nn.DenseGeneral unboxes
  its kernel at the flattened shape before reshaping it, which a constraint of the final rank rejects
  under a mesh. The jitted steps place parameters by their shardings already."""

  def unbox(self, apply_constraint: bool = True):
    return self.value


def partitioned(init: Callable, axes: tuple[str | None, ...]) -> Callable:
  return lambda *args, **kwargs: LogicallyPartitioned(init(*args, **kwargs), axes)


# model.remat: what a rematerialised layer keeps for the backward pass ("none" turns remat off).
REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}

ACTIVATIONS: dict[str, Callable] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # exact erf GELU, as BERT/ALBERT use
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
}


def activation(name: str) -> Callable:
  return ACTIVATIONS[name]


def constrain(x: jax.Array, axes: tuple[str | None, ...]) -> jax.Array:
  return nn.with_logical_constraint(x, axes)


def layer_norm(eps: float, dtype: Dtype, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(
      epsilon=eps, dtype=dtype, param_dtype=jnp.float32,
      scale_init=partitioned(nn.initializers.ones, ("embed",)),
      bias_init=partitioned(nn.initializers.zeros, ("embed",)), name=name)


def _leading_kernel_dims(dimension_numbers, x_ndim: int, kernel_ndim: int) -> int | None:
  """n when a dot contracts x's last n dims with the kernel's first n, in order, with no batch dims; else None."""
  (x_contract, kernel_contract), batch = dimension_numbers
  n = len(x_contract)
  if batch != ((), ()) or n >= kernel_ndim or tuple(kernel_contract) != tuple(range(n)):
    return None
  return n if tuple(x_contract) == tuple(range(x_ndim - n, x_ndim)) else None


def _x_dot_kernel(x, kernel, n: int, precision):
  return jax.lax.dot_general(x, kernel, ((tuple(range(x.ndim - n, x.ndim)), tuple(range(n))), ((), ())),
                             precision=precision)


def _x_dot_kernel_vjp(n, precision, residuals, dy):
  x, kernel = residuals
  free = x.ndim - n
  dx = jax.lax.dot_general(dy, kernel, ((tuple(range(free, dy.ndim)), tuple(range(n, kernel.ndim))), ((), ())),
                           precision=precision)
  dkernel = jax.lax.dot_general(x, dy, ((tuple(range(free)), tuple(range(free))), ((), ())), precision=precision)
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


_x_dot_kernel_custom = jax.custom_vjp(_x_dot_kernel, nondiff_argnums=(2, 3))
_x_dot_kernel_custom.defvjp(lambda x, kernel, n, precision: (_x_dot_kernel(x, kernel, n, precision), (x, kernel)),
                            _x_dot_kernel_vjp)
KERNEL_GRAD_IN_LAYOUT = True


def kernel_dot_general(x, kernel, dimension_numbers, precision=None, preferred_element_type=None):
  """lax.dot_general of activations and a layer's kernel whose kernel gradient is computed as x^T . dy, in the
  kernel's layout. JAX's own rule computes dy^T . x and transposes the product, which XLA:CPU then copies with a
  strided loop (summed over the layers that share it, for ALBERT). Other dot shapes go to lax.dot_general."""
  n = _leading_kernel_dims(dimension_numbers, x.ndim, kernel.ndim)
  if n is None or preferred_element_type is not None or not KERNEL_GRAD_IN_LAYOUT:
    return jax.lax.dot_general(x, kernel, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)
  return _x_dot_kernel_custom(x, kernel, n, precision)


def dense(features: int, kernel_axes: tuple[str | None, str | None], init_std: float, dtype: Dtype,
          name: str, use_bias: bool = True) -> nn.Dense:
  """A dense layer with logical axis names on its kernel and bias."""
  return nn.Dense(
      features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, dot_general=kernel_dot_general,
      kernel_init=partitioned(initializer(init_std), kernel_axes),
      bias_init=partitioned(nn.initializers.zeros, kernel_axes[-1:]), name=name)


class SelfAttention(nn.Module):
  """Multi-head self-attention with biases (BERT layout): q/k/v kernels [embed, heads, kv]. Given `memory_BSD`,
  keys and values come from it (an encoder-decoder's cross-attention) and the mask is [B, 1, L, S]."""
  num_heads: int
  head_dim: int
  dropout: float = 0.0
  init_std: float = 0.02
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BLD, mask_B11L, deterministic: bool, memory_BSD=None):
    memory_BSD = x_BLD if memory_BSD is None else memory_BSD

    def projection(name):
      return nn.DenseGeneral(
          (self.num_heads, self.head_dim), dtype=self.dtype, param_dtype=jnp.float32, dot_general=kernel_dot_general,
          kernel_init=partitioned(initializer(self.init_std), ("embed", "heads", "kv")),
          bias_init=partitioned(nn.initializers.zeros, ("heads", "kv")), name=name)

    q_BLHK = constrain(projection("query")(x_BLD), ("batch", "length", "heads", "kv"))
    k_BLHK = constrain(projection("key")(memory_BSD), ("batch", "length", "heads", "kv"))
    v_BLHK = constrain(projection("value")(memory_BSD), ("batch", "length", "heads", "kv"))
    if deterministic or self.dropout == 0.0:
      out_BLHK = jax.nn.dot_product_attention(q_BLHK, k_BLHK, v_BLHK, mask=mask_B11L)
    else:
      logits_BHLL = jnp.einsum("bqhk,bshk->bhqs", q_BLHK, k_BLHK) / jnp.sqrt(self.head_dim).astype(self.dtype)
      logits_BHLL = jnp.where(mask_B11L, logits_BHLL, jnp.finfo(logits_BHLL.dtype).min)
      probs_BHLL = jax.nn.softmax(logits_BHLL.astype(jnp.float32), axis=-1).astype(self.dtype)
      probs_BHLL = Dropout(self.dropout)(probs_BHLL, deterministic=False)
      out_BLHK = jnp.einsum("bhqs,bshk->bqhk", probs_BHLL, v_BLHK)
    out_BLHK = constrain(out_BLHK, ("batch", "length", "heads", "kv"))
    return nn.DenseGeneral(
        x_BLD.shape[-1], axis=(-2, -1), dtype=self.dtype, param_dtype=jnp.float32, dot_general=kernel_dot_general,
        kernel_init=partitioned(initializer(self.init_std), ("heads", "kv", "embed")),
        bias_init=partitioned(nn.initializers.zeros, ("embed",)), name="out")(out_BLHK)


class Embed(nn.Module):
  """A lookup table [num, features]; `attend` gives logits against it (tied output layers)."""
  num_embeddings: int
  features: int
  axes: tuple[str | None, str | None] = ("vocab", "embed")
  init_std: float = 0.02
  dtype: Dtype = jnp.float32

  def setup(self):
    self.embedding = self.param(
        "embedding", partitioned(initializer(self.init_std), self.axes),
        (self.num_embeddings, self.features), jnp.float32)

  def __call__(self, ids):
    return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

  def attend(self, x):
    return jnp.dot(x, self.embedding.astype(self.dtype).T)


def padding_mask(attention_mask_BL: jax.Array) -> jax.Array:
  """[B, L] of 1/0 -> boolean [B, 1, 1, L] that lets every query see the non-padded keys."""
  return attention_mask_BL.astype(bool)[:, None, None, :]


def attention_mask(mask: jax.Array) -> jax.Array:
  """Boolean [B, 1, Q, L]: a [B, L] padding mask (1 = a real token) lets every query see the real keys (Q = 1,
  padding_mask); a [B, L, L] or [B, 1, L, L] mask (1 = the query may see the key) is taken as it is."""
  if mask.ndim == 2:
    return padding_mask(mask)
  return (mask[:, None] if mask.ndim == 3 else mask).astype(bool)


class PostLNFeedForward(nn.Module):
  """Dense up, activation, [dropout: XLNet's inner_dropout], dense down, dropout, residual, LayerNorm: the post-LN
  feed-forward block of BERT and XLNet. cfg holds intermediate_size, hidden_size, hidden_act, dropout,
  initializer_range, compute_dtype and layer_norm_eps."""
  cfg: Any
  deterministic: bool
  inner_dropout: bool = False

  @nn.compact
  def __call__(self, x_BLH):
    cfg = self.cfg
    h_BLF = dense(cfg.intermediate_size, ("embed", "mlp"), cfg.initializer_range, cfg.compute_dtype,
                  "intermediate")(x_BLH)
    h_BLF = constrain(activation(cfg.hidden_act)(h_BLF), ("batch", "length", "mlp"))
    if self.inner_dropout:
      h_BLF = Dropout(cfg.dropout)(h_BLF, deterministic=self.deterministic)
    y_BLH = dense(cfg.hidden_size, ("mlp", "embed"), cfg.initializer_range, cfg.compute_dtype, "output")(h_BLF)
    y_BLH = Dropout(cfg.dropout)(y_BLH, deterministic=self.deterministic)
    return layer_norm(cfg.layer_norm_eps, cfg.compute_dtype, "layer_norm")(x_BLH + y_BLH)
