"""The library's one FLOP counter: model FLOPs per token and tensor-parallel traffic, read off the traced
training loss of one sequence (`jax.make_jaxpr`), so a new family needs nothing here. Layer sharing, scanned
layers, attention and the heads count as the traced program runs them; work whose result nothing uses is left
out, as XLA drops it (a scanned layer's body is the same for every layer, so nothing is dropped from it).

FLOPs per token: 2 per multiply-add of every matrix product (dot_general) of the forward pass, times 3 for
training (backward = 2 x forward), divided by data.seq_len: the convention of MFU. Elementwise work (norms,
softmax, dropout, the optimizer) and remat's recompute are not counted.

Tensor parallelism: a product that contracts a parameter dimension the rules shard over the `tensor` mesh
axis (the output projection of an attention or feed-forward block: heads, mlp) sums partial results, an
all-reduce of its output; backward, the gradients of the differentiable inputs of the products that made
that block's sharded activations from parameters (q/k/v, the first feed-forward matrix) are partial sums too.
"""

import itertools
import operator
from typing import Any

import flax.linen as nn
import jax
from jax.extend import core as jax_core
import numpy as np

from bert_jax import models, parallel, params as params_lib
from bert_jax.objectives import carries_memory, forward_with_memory, get_objective, training_loss

Var = jax_core.Var
MOVES = {"concatenate", "convert_element_type", "copy", "reshape", "transpose"}  # elements moved, not computed


def flops_per_token(config: Any) -> float:
  """Model FLOPs per training token: 3 x the forward matrix products of one sequence / data.seq_len, plus 1 x those
  of a frozen model the objective runs and does not train (distillation's teacher: forward only)."""
  trained = _count(config)[0]
  frozen = _count(config, frozen=True)[0] - trained if getattr(get_objective(config), "frozen_source", None) else 0
  return (3.0 * trained + frozen) / config.data.seq_len


def tensor_all_reduce_elements(config: Any) -> float:
  """Activation elements all-reduced over the tensor axis per sequence and training step (forward and
  backward), whatever the tensor axis's size."""
  return float(_count(config)[1])


def _count(config: Any, frozen: bool = False) -> tuple[int, int]:
  """(forward FLOPs, tensor all-reduce elements) of one sequence's loss; with `frozen`, the frozen model's forward
  pass in it too."""
  objective = get_objective(config)
  source = getattr(objective, "frozen_source", None) if frozen else None
  frozen_params = params_lib.abstract(source.model_config) if source else None
  model = models.build_model(config.model, deterministic=True)
  boxed = params_lib.abstract(config.model, model, boxed=True)
  batch = {name: jax.ShapeDtypeStruct(shape, dtype) for name, (shape, dtype) in objective.feature_spec(1).items()}
  memory = jax.ShapeDtypeStruct(*objective.memory_spec(1)) if carries_memory(objective) else None
  loss = lambda p, b, m, f: training_loss(forward_with_memory(objective, model, p, b, m, frozen=f)[0],
                                          objective.counts(b))
  jaxpr = jax.make_jaxpr(loss)(nn.meta.unbox(boxed), batch, memory, frozen_params).jaxpr
  rules = parallel.logical_rules(config)
  tensor = {name for name, _ in rules if "tensor" in parallel.mesh_axes(name, rules)}
  leaves = jax.tree_util.tree_leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  sharded = {var: frozenset(i for i, name in enumerate(getattr(leaf, "names", ())) if name in tensor)
             for var, leaf in zip(jaxpr.invars, leaves)}
  return _walk(jaxpr, sharded, set(sharded), {}, {})


def _used(jaxpr: jax_core.Jaxpr) -> list:
  """The equations whose results reach the jaxpr's outputs."""
  live, used = {v for v in jaxpr.outvars if isinstance(v, Var)}, []
  for eqn in reversed(jaxpr.eqns):
    if eqn.effects or live.intersection(eqn.outvars):
      live.update(v for v in eqn.invars if isinstance(v, Var))
      used.append(eqn)
  return used[::-1]


def _reshaped(dims: frozenset, old: tuple, new: tuple) -> frozenset:
  """The dimensions of a reshape's output that hold elements of the input's dimensions `dims`."""
  a, b = (list(itertools.accumulate(shape, operator.mul, initial=1)) for shape in (old, new))
  return frozenset(j for j in range(len(new)) for i in dims if max(a[i], b[j]) < min(a[i + 1], b[j + 1]))


def _walk(jaxpr: jax_core.Jaxpr, sharded: dict, differentiable: set, pending: dict, source: dict
          ) -> tuple[int, int]:
  """(matrix-product FLOPs, tensor all-reduce elements) of a jaxpr, through scans (times their length), remat,
  nested jits and conds (the larger branch). `sharded`: variables holding a parameter (or its cast, reshape,
  transpose) -> its tensor-sharded dimensions; `pending`: differentiable inputs of the column-parallel
  products since the last row-parallel one -> their sizes; `source`: a variable that only moves another
  differentiable one (a cast, reshape or concatenation with constants) -> that one (their gradients add up
  before one all-reduce)."""
  flops = elements = 0
  for eqn in _used(jaxpr):
    name, ins, outs = eqn.primitive.name, eqn.invars, eqn.outvars
    dims = [sharded.get(v, frozenset()) if isinstance(v, Var) else frozenset() for v in ins]
    moving = differentiable.intersection(v for v in ins if isinstance(v, Var))
    if name != "stop_gradient" and moving:
      differentiable.update(outs)
    if name in MOVES and len(moving) == 1:
      source[outs[0]] = source.get(*moving, *moving)
    if name == "dot_general":
      contract, batch = eqn.params["dimension_numbers"]
      size = int(np.prod(outs[0].aval.shape))
      flops += 2 * size * int(np.prod([ins[0].aval.shape[d] for d in contract[0]]))
      for i, other in ((0, ins[1]), (1, ins[0])):
        if dims[i] & set(contract[i]):  # row-parallel: partial outputs, and the block's input gradients
          elements += size + sum(pending.values())
          pending.clear()
        elif dims[i] - set(batch[i]) and other in differentiable:  # column-parallel
          key = source.get(other, other)
          pending[key] = max(pending.get(key, 0), int(np.prod(other.aval.shape)))
    elif dims and dims[0] and name in MOVES:
      perm = eqn.params.get("permutation")
      sharded[outs[0]] = (frozenset(j for j, p in enumerate(perm) if p in dims[0]) if perm is not None else
                          _reshaped(dims[0], ins[0].aval.shape, outs[0].aval.shape) if name == "reshape"
                          else dims[0])
    else:
      repeat = eqn.params.get("length", 1) if name == "scan" else 1
      xs = eqn.params.get("num_consts", 0) + eqn.params.get("num_carry", 0) if name == "scan" else len(ins)
      counts = [(0, 0)]
      for value in eqn.params.values():
        for inner in (value if isinstance(value, (tuple, list)) else (value,)):
          inner = getattr(inner, "jaxpr", inner)
          if not isinstance(inner, jax_core.Jaxpr):
            continue
          offset = len(ins) - len(inner.invars)
          for k, var in enumerate(inner.invars[max(0, -offset):], start=max(0, -offset)):
            outer, d = ins[k + offset], dims[k + offset]
            if d:
              sharded[var] = frozenset(j - 1 for j in d if j) if k + offset >= xs else d
            if isinstance(outer, Var) and outer in differentiable:
              differentiable.add(var)
              if name != "scan":  # a call's input is the outer value itself (a custom_vjp's kernel product)
                source[var] = source.get(outer, outer)
          counts.append(_walk(inner, sharded, differentiable, pending, source))
      flops += repeat * max(c[0] for c in counts)
      elements += repeat * max(c[1] for c in counts)
  return flops, elements
