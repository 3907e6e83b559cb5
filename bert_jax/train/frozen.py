"""Parameters an objective reads but never trains (distillation's teacher): the model its `frozen_source` names, with
the shardings the run's logical rules give its parameters (as they give the run's own), read once and passed into the
compiled train and eval steps as an argument of their own. They are no part of the train state: no optimizer state,
no gradient, and not in the run's checkpoints (the run reads them from their source again when it resumes).
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from bert_jax import convert, models, parallel, params as params_lib
from bert_jax.convert import weights
from bert_jax.train import state as state_lib


@dataclasses.dataclass
class Frozen:
  model_config: Any  # config.model of the frozen model
  path: str  # its parameter checkpoint
  abstract: Any  # its parameters as ShapeDtypeStructs carrying their shardings
  _params: Any = None

  @property
  def shardings(self) -> Any:
    return jax.tree_util.tree_map(lambda x: x.sharding, self.abstract)

  @property
  def count(self) -> int:
    return params_lib.count(self.abstract)

  def host_params(self) -> dict:
    """The parameters as numpy arrays in the unscanned layout."""
    module = models.family(self.model_config)
    return module.to_layout(weights.restore_params(self.path), module.make_config(self.model_config), scanned=False)

  def params(self) -> Any:
    """The parameters placed on the mesh (read on the first call)."""
    if self._params is None:
      module = models.family(self.model_config)
      cfg = module.make_config(self.model_config)
      tree = module.to_layout(self.host_params(), cfg, scanned=cfg.scan_layers)
      convert.check_params(self.model_config, tree)
      self._params = place(tree, self.abstract)
    return self._params


def make(objective: Any, mesh: jax.sharding.Mesh, rules: parallel.Rules) -> Frozen | None:
  """The frozen parameters `objective` reads (its frozen_source), None when it reads none."""
  source = getattr(objective, "frozen_source", None)
  if source is None:
    return None
  model = models.build_model(source.model_config, deterministic=True)
  boxed = state_lib.boxed_abstract_params(model, source.model_config)
  shardings = state_lib.param_shardings(boxed, mesh, rules)
  abstract = jax.tree_util.tree_map(lambda x, sharding: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                                    nn.meta.unbox(boxed), shardings)
  return Frozen(source.model_config, source.params_path, abstract)


def initial_params(objective: Any, frozen: Frozen | None) -> dict | None:
  """The trained model's first parameters (unscanned) that the objective makes from the frozen ones (its
  initial_params), None when there are none or it starts at random."""
  start = getattr(objective, "initial_params", None)
  return None if frozen is None or start is None else start(frozen.host_params())


def place(tree: Any, abstract: Any) -> Any:
  """A host tree of arrays on the devices of `abstract`'s shardings (each process keeps its shards)."""
  return jax.tree_util.tree_map(
      lambda x, spec: jax.make_array_from_callback(spec.shape, spec.sharding,
                                                   lambda index: np.asarray(x, spec.dtype)[index]),
      tree, abstract)
