"""Layers shared by the model families: matrix products, dense layers, feed-forward, embeddings, norms,
activations (attention: `bert_jax.models.attention`).

Every parameter carries logical axis names (`vocab`, `embed`, `heads`, `kv`, `mlp`, `layers`);
`bert_jax.parallel` maps them to mesh axes with the rules in the config.
"""

from collections.abc import Callable
from typing import Any, TypedDict

import flax.linen as nn
from flax.linen.dtypes import promote_dtype
from flax.linen.linear import PromoteDtypeFn
from flax.typing import DotGeneralT
import jax
import jax.numpy as jnp
import numpy as np

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


# Activations whose derivative JAX would compute from intermediates it keeps for the backward pass (GELU's erf or
# tanh terms); `recomputed` keeps their input instead.
RECOMPUTED_ACTIVATIONS = ("gelu", "gelu_new")


def recomputed(fn: Callable) -> Callable:
  """fn keeping only its inputs for the backward pass, which recomputes its intermediates from them (as PyTorch's
  GELU and LayerNorm do). For element-wise steps and normalizations: writing and reading their intermediates costs
  more than computing them again, and under nn.scan each is copied into a stacked [layers, ...] buffer."""
  return jax.checkpoint(fn)


def recomputed_module(module_cls: type) -> type:
  """`recomputed` for a flax module class (LayerNorm)."""
  return nn.remat(module_cls)


def activation(name: str) -> Callable:
  return recomputed(ACTIVATIONS[name]) if name in RECOMPUTED_ACTIVATIONS else ACTIVATIONS[name]


def constrain(x: jax.Array, axes: tuple[str | None, ...]) -> jax.Array:
  return nn.with_logical_constraint(x, axes)


def layer_norm(eps: float, dtype: Dtype, name: str) -> nn.LayerNorm:
  """flax's LayerNorm (float32 parameters) keeping only its input for the backward pass (`recomputed`)."""
  return recomputed_module(nn.LayerNorm)(
      epsilon=eps, dtype=dtype, param_dtype=jnp.float32,
      scale_init=partitioned(nn.initializers.ones, ("embed",)),
      bias_init=partitioned(nn.initializers.zeros, ("embed",)), name=name)


LOW_PRECISION = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def _as_matrices(x, y, dimension_numbers):
  """Without batch axes, where each operand's contracted axes are one run at its start or its end (paired in order),
  the operands as 2-D matrices, their contraction dimension numbers and the product's shape; else None.
  XLA:CPU takes a product contracted over several axes (a kernel's gradient, over batch and length) by first copying
  an operand into a layout with those axes last, a strided copy as large as the activations; contracted over the one
  merged axis, a float32 product reads both operands as they lie (BERT-base's float32 step 1.20x faster on the AMX
  Xeon, `python benchmarks/step_ab.py matrix-dots`). Not for bfloat16: there the copy feeds YNNPACK's AMX kernels,
  and without it the product runs at float32's rate (0.64x)."""
  (x_contract, y_contract), (x_batch, y_batch) = dimension_numbers
  if x_batch or y_batch or (x.ndim == 2 and y.ndim == 2):
    return None

  def run_side(ndim, axes):
    if tuple(axes) == tuple(range(len(axes))):
      return 0
    return 1 if tuple(axes) == tuple(range(ndim - len(axes), ndim)) else None

  x_side, y_side = run_side(x.ndim, x_contract), run_side(y.ndim, y_contract)
  if x_side is None or y_side is None:
    return None
  size = int(np.prod([x.shape[a] for a in x_contract]))
  x_free = [x.shape[a] for a in range(x.ndim) if a not in x_contract]
  y_free = [y.shape[a] for a in range(y.ndim) if a not in y_contract]

  def matrix(operand, side, free):
    rows = int(np.prod(free))
    return operand.reshape((size, rows) if side == 0 else (rows, size))

  return (matrix(x, x_side, x_free), matrix(y, y_side, y_free), (((x_side,), (y_side,)), ((), ())),
          tuple(x_free + y_free))


def platform() -> str:
  """The platform of the mesh the model is traced under (jax.set_mesh: a TPU plan's compile-only devices too), else of
  the default backend."""
  device = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
  return device.platform if device is not None else jax.default_backend()


def _product(x, y, dimension_numbers, precision, out_dtype):
  """lax.dot_general into out_dtype. On the CPU, XLA multiplies bfloat16 matrices natively (YNNPACK: AVX512-BF16,
  AMX) only into a float32 product: a bfloat16 product is computed by first converting both operands to float32, at
  float32's rate. So low-precision products without batch dimensions are taken in float32 and cast; those with
  batch dimensions (attention) are computed in float32, as XLA would, because XLA:CPU has no bfloat16 x bfloat16 ->
  float32 kernel for the layouts YNNPACK declines."""
  on_cpu = platform() == "cpu"
  float32 = x.dtype == y.dtype == jnp.float32
  matrices = _as_matrices(x, y, dimension_numbers) if on_cpu and float32 else None
  if matrices:
    x, y, dimension_numbers, shape = matrices
    return jax.lax.dot_general(x, y, dimension_numbers, precision=precision,
                               preferred_element_type=out_dtype).reshape(shape)
  if x.dtype in LOW_PRECISION and on_cpu:
    return _low_precision_on_cpu(x, y, dimension_numbers, precision, out_dtype)
  return jax.lax.dot_general(x, y, dimension_numbers, precision=precision, preferred_element_type=out_dtype)


def _low_precision_on_cpu(x, y, dimension_numbers, precision, out_dtype):
  """A bfloat16 / float16 product on the CPU: into float32, then cast (see `_product`)."""
  if dimension_numbers[1][0]:  # batched: in float32
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  out = jax.lax.dot_general(x, y, dimension_numbers, precision=precision, preferred_element_type=jnp.float32)
  return out.astype(out_dtype)


def _cotangent(g, other, g_axes, other_free, g_batch, other_batch, batch, free, contracted, precision, dtype,
               compute_dtype):
  """An operand's cotangent: g contracted with the other operand over the other's free axes (g_axes in g). The
  product's axes are the operand's `batch`, then its `free` and `contracted` axes in one order or the other: the
  order that needs no transpose afterwards where there is one (JAX's rule always puts the free axes first; for a
  kernel that means dy^T . x and a transposed copy of the product)."""
  if not jnp.issubdtype(dtype, jnp.floating):
    return None
  g, other = g.astype(compute_dtype), other.astype(compute_dtype)
  order = batch + contracted + free
  if order == sorted(order) and batch + free + contracted != order:
    product = _product(other, g, ((other_free, g_axes), (other_batch, g_batch)), precision, dtype)
  else:
    order = batch + free + contracted
    product = _product(g, other, ((g_axes, other_free), (g_batch, other_batch)), precision, dtype)
  return product if order == sorted(order) else jnp.transpose(product, np.argsort(order))


def _dot_vjp(dimension_numbers, precision, out_dtype, compute_dtype, residuals, g):
  x, y = residuals
  (x_contract, y_contract), (x_batch, y_batch) = (tuple(map(list, pair)) for pair in dimension_numbers)
  x_free = [a for a in range(x.ndim) if a not in x_contract + x_batch]
  y_free = [a for a in range(y.ndim) if a not in y_contract + y_batch]
  g_batch = list(range(len(x_batch)))
  g_x = list(range(len(x_batch), len(x_batch) + len(x_free)))
  g_y = list(range(len(x_batch) + len(x_free), g.ndim))
  dx = _cotangent(g, y, g_y, y_free, g_batch, y_batch, x_batch, x_free,
                  [x_contract[i] for i in np.argsort(y_contract)], precision, x.dtype, compute_dtype)
  dy = _cotangent(g, x, g_x, x_free, g_batch, x_batch, y_batch, y_free,
                  [y_contract[i] for i in np.argsort(x_contract)], precision, y.dtype, compute_dtype)
  return dx, dy


def _compute_product(x, y, dimension_numbers, precision, out_dtype, compute_dtype):
  return _product(x.astype(compute_dtype), y.astype(compute_dtype), dimension_numbers, precision, out_dtype)


_custom_dot = jax.custom_vjp(_compute_product, nondiff_argnums=(2, 3, 4, 5))
_custom_dot.defvjp(lambda x, y, *args: (_compute_product(x, y, *args), (x, y)), _dot_vjp)


def dot_general(x, y, dimension_numbers, precision=None, preferred_element_type=None):
  """lax.dot_general for the models' matrix products (dense layers, attention, tied output layers), with the same
  values and three changes that matter on the CPU:
  - each operand's gradient is computed in that operand's own layout where one order of the two operands gives it
    (a kernel's as x^T . dy; JAX's rule computes dy^T . x and transposes the product, which XLA:CPU copies with a
    strided loop, summed over the layers that share it for ALBERT);
  - bfloat16 / float16 operands are multiplied into a float32 product on the CPU (then cast to the result dtype),
    forward and backward, where XLA has native bfloat16 matmuls;
  - float32 products over several contracted axes are taken as products of 2-D matrices (`_as_matrices`).
  A float32 operand beside a low-precision one is cast to the low precision inside the product (the kernels)."""
  compute_dtype = _compute_dtype(x.dtype, y.dtype)
  if compute_dtype is None:
    return jax.lax.dot_general(x, y, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)
  out_dtype = jnp.dtype(preferred_element_type or compute_dtype)
  dimension_numbers = tuple(tuple(tuple(int(a) for a in axes) for axes in pair) for pair in dimension_numbers)
  return _custom_dot(x, y, dimension_numbers, precision, out_dtype, compute_dtype)


def _compute_dtype(x_dtype, y_dtype):
  """The dtype both operands are multiplied in: theirs, or the low precision one's beside a float32 kernel (the
  dense layers pass their float32 kernels, see `promote_except_kernel`, and XLNet its projections); None for other
  mixes."""
  if x_dtype == y_dtype:
    return x_dtype
  if {x_dtype, y_dtype} <= set(LOW_PRECISION) | {jnp.dtype(jnp.float32)}:
    return min(x_dtype, y_dtype, key=lambda d: d.itemsize)
  return None


def promote_except_kernel(*args: jax.Array | None, dtype: Any = None, inexact: bool = True) -> list[jax.Array | None]:
  """Flax's promote_dtype for nn.Dense / DenseGeneral, which pass (inputs, kernel, bias), leaving the float32 kernel
  to `dot_general`: it casts the kernel inside its product, so that the backward pass reads the parameter itself
  instead of a saved low-precision copy (a copy of every layer's weights under nn.scan) and the kernel's gradient
  comes out of a float32 product without rounding to the compute dtype first."""
  inputs, kernel, bias = args
  promoted_inputs, promoted_bias = promote_dtype(inputs, bias, dtype=dtype, inexact=inexact)
  return [promoted_inputs, kernel, promoted_bias]


class KernelProduct(TypedDict):
  """The products of nn.Dense / nn.DenseGeneral, passed as keyword arguments (**KERNEL_PRODUCT)."""
  dot_general: DotGeneralT
  promote_dtype: PromoteDtypeFn


KERNEL_PRODUCT: KernelProduct = {"dot_general": dot_general, "promote_dtype": promote_except_kernel}


def einsum(subscripts: str, *operands, preferred_element_type=None):
  """jnp.einsum whose products are `dot_general`'s."""
  return jnp.einsum(subscripts, *operands, preferred_element_type=preferred_element_type, _dot_general=dot_general)


def dense(features: int, kernel_axes: tuple[str | None, str | None], init_std: float, dtype: Dtype,
          name: str, use_bias: bool = True) -> nn.Dense:
  """A dense layer with logical axis names on its kernel and bias."""
  return nn.Dense(
      features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, **KERNEL_PRODUCT,
      kernel_init=partitioned(initializer(init_std), kernel_axes),
      bias_init=partitioned(nn.initializers.zeros, kernel_axes[-1:]), name=name)


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
    return dot_general(x.astype(self.dtype), self.embedding, (((x.ndim - 1,), (1,)), ((), ())))


class PostLNFeedForward(nn.Module):
  """Dense up, activation, [dropout: XLNet's inner_dropout], dense down, dropout, residual, LayerNorm: the post-LN
  feed-forward block of BERT and XLNet. cfg holds intermediate_size, hidden_size, hidden_act, dropout,
  initializer_range, compute_dtype and layer_norm_eps."""
  cfg: Any
  deterministic: bool
  inner_dropout: bool = False

  @nn.compact
  def __call__(self, x_BLD):
    cfg = self.cfg
    h_BLF = dense(cfg.intermediate_size, ("embed", "mlp"), cfg.initializer_range, cfg.compute_dtype,
                  "intermediate")(x_BLD)
    h_BLF = constrain(activation(cfg.hidden_act)(h_BLF), ("batch", "length", "mlp"))
    if self.inner_dropout:
      h_BLF = Dropout(cfg.dropout)(h_BLF, deterministic=self.deterministic)
    y_BLD = dense(cfg.hidden_size, ("mlp", "embed"), cfg.initializer_range, cfg.compute_dtype, "output")(h_BLF)
    y_BLD = Dropout(cfg.dropout)(y_BLD, deterministic=self.deterministic)
    return layer_norm(cfg.layer_norm_eps, cfg.compute_dtype, "layer_norm")(x_BLD + y_BLD)
