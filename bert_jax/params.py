"""Parameter counts from abstract shapes (`jax.eval_shape`: nothing is allocated)."""

from typing import Any

import flax.linen as nn
import jax
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
    encoder_inputs = getattr(module, "encoder_inputs", module.example_inputs)(cfg)
    result["encoder"] = count(abstract_params(encoder, encoder_inputs))
  return result
