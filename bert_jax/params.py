"""Parameter counts from abstract shapes (`jax.eval_shape`: nothing is allocated), model FLOPs per token
and the peak FLOP/s of known devices (for MFU)."""

from typing import Any

import flax.linen as nn
import jax
from jax.extend import core as jax_core
import numpy as np

from bert_jax import models


def abstract_params(module: nn.Module, inputs: dict) -> dict:
  """The parameter tree of `module` as ShapeDtypeStructs, with the logical-partitioning boxes removed."""
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), **inputs))
  return nn.meta.unbox(variables["params"])


def count(tree: Any) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def breakdown(tree: dict, depth: int = 2, prefix: str = "") -> list[tuple[str, int]]:
  """(path, count) rows down to `depth` levels, in the tree's order."""
  rows = []
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict) and depth > 1:
      rows.extend(breakdown(value, depth - 1, name + "/"))
    else:
      rows.append((name, count(value)))
  return rows


def count_model(model_config: Any, depth: int = 2) -> dict:
  """{'total': pretraining model, 'encoder': bare encoder (with pooler where the family has one), 'rows': ...}."""
  module = models.family(model_config)
  cfg = module.make_config(model_config)
  inputs = module.example_inputs(cfg)
  tree = abstract_params(module.build(cfg), inputs)
  result = {"total": count(tree), "rows": breakdown(tree, depth)}
  encoder = module.build_encoder(cfg)
  if encoder is not None:
    result["encoder"] = count(abstract_params(encoder, inputs))
  return result


def matmul_flops(jaxpr: jax_core.Jaxpr) -> int:
  """FLOPs of the matrix products in a jaxpr, through scans (times their length), remat and nested jits."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      lhs_shape = eqn.invars[0].aval.shape
      total += 2 * int(np.prod(eqn.outvars[0].aval.shape)) * int(np.prod([lhs_shape[d] for d in contract]))
      continue
    repeat = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
    for value in eqn.params.values():
      inner = value if isinstance(value, (tuple, list)) else (value,)
      counts = [matmul_flops(getattr(v, "jaxpr", v)) for v in inner
                if isinstance(getattr(v, "jaxpr", v), jax_core.Jaxpr)]
      total += repeat * max(counts, default=0)  # branches of a cond: the largest
  return total


def flops_per_token(config: Any) -> float:
  """Model FLOPs per training token: 3 x (forward matrix products) per token of data.seq_len, counted from
  the traced model and objective (layer sharing, attention and heads included, rematerialisation not)."""
  from bert_jax.objectives import get_objective, training_loss

  objective = get_objective(config)
  model = models.build_model(config.model, deterministic=True)
  module = models.family(config.model)
  inputs = module.example_inputs(module.make_config(config.model))
  params = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.key(0), **inputs)["params"]))
  batch = {name: jax.ShapeDtypeStruct(shape, dtype) for name, (shape, dtype) in objective.feature_spec(1).items()}
  loss = lambda p, b: training_loss(*_sums_and_counts(objective, model, p, b))
  forward = matmul_flops(jax.make_jaxpr(loss)(params, batch).jaxpr)
  return 3.0 * forward / config.data.seq_len


def _sums_and_counts(objective: Any, model: nn.Module, params: Any, batch: dict) -> tuple[dict, dict]:
  return objective.forward(model, params, batch)[0], objective.counts(batch)


# Dense bfloat16 peak FLOP/s per device, by jax device_kind (first matching prefix wins).
PEAK_FLOPS = (
    ("TPU v4", 275e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
    ("TPU v5p", 459e12),
    ("TPU v5", 459e12),
    ("TPU v6 lite", 918e12),
    ("NVIDIA A100", 312e12),
    ("NVIDIA H100", 989e12),
    ("NVIDIA H200", 989e12),
)


def peak_flops(device_kind: str) -> float | None:
  """Peak bfloat16 FLOP/s of one device, or None when the kind is not in the table."""
  return next((peak for prefix, peak in PEAK_FLOPS if device_kind.startswith(prefix)), None)
