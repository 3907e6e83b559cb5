"""Parameter trees from abstract shapes (`jax.eval_shape`: nothing is allocated) and their exact counts."""

from typing import Any

import flax.linen as nn
import jax
import numpy as np

from bert_jax import models


def abstract_params(model: nn.Module, inputs: dict, boxed: bool = False) -> Any:
  """The parameter tree `model.init` makes from `inputs`, as ShapeDtypeStructs; boxed=True keeps the
  logical-partitioning boxes. Dropout keys are given too: a training-mode model draws them while it inits."""
  init = lambda x: model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, **x)
  tree = jax.eval_shape(init, inputs)["params"]
  return tree if boxed else nn.meta.unbox(tree)


def abstract(model_config: Any, model: nn.Module | None = None, boxed: bool = False) -> Any:
  """The abstract parameters of `model` (default: the family's pretraining model), traced with the family's
  example inputs: the one place the family -> config -> example inputs -> eval_shape sequence is written."""
  module = models.family(model_config)
  cfg = module.make_config(model_config)
  inputs = jax.eval_shape(lambda: module.example_inputs(cfg))
  return abstract_params(module.build(cfg) if model is None else model, inputs, boxed)


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
  tree = abstract(model_config)
  result = {"total": count(tree), "rows": breakdown(tree, depth)}
  encoder = module.build_encoder(module.make_config(model_config))
  if encoder is not None:
    result["encoder"] = count(abstract(model_config, encoder))
  return result
