"""The train state (params, optimizer state, step, rng, and the memory an objective carries between batches)
and its shardings, initialised sharded."""

from collections.abc import Callable
import functools
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import optax

from bert_jax import models, parallel, params as params_lib


@flax.struct.dataclass
class TrainState:
  """The state's arrays; the same tree also holds their shardings (state_shardings) or ShapeDtypeStructs
  (abstract_state), hence the Any leaves."""
  step: Any  # int32 []: optimizer steps taken
  params: Any
  opt_state: Any
  rng: Any  # uint32 key data of the run's base key; each step folds in its number
  memory: Any = None  # [B, ...] per batch row, for objectives that carry it (XLNet with model.mem_len > 0)

  if TYPE_CHECKING:  # flax.struct.dataclass adds it (dataclasses.replace)
    def replace(self, **updates: Any) -> "TrainState": ...


def boxed_abstract_params(model: nn.Module, model_config: Any) -> Any:
  """The parameter tree as ShapeDtypeStructs inside their LogicallyPartitioned boxes (nothing allocated)."""
  return params_lib.abstract(model_config, model, boxed=True)


def example_inputs(model_config: Any) -> dict:
  """The family's example inputs; call it under a trace so that nothing runs eagerly."""
  module = models.family(model_config)
  return module.example_inputs(module.make_config(model_config))


def init_rngs(key: jax.Array) -> dict:
  """Initialisation traces a training-mode model too, whose dropout layers draw keys."""
  return {"params": jax.random.fold_in(key, 0), "dropout": jax.random.fold_in(key, 1)}


def _path_key(path) -> tuple[str, ...]:
  return tuple(jax.tree_util.keystr((k,), simple=True) for k in path)


def opt_state_shardings(abstract_opt_state: Any, abstract_params: Any, param_shardings: Any, mesh: Mesh) -> Any:
  """Optimizer-state leaves that mirror a parameter (same path suffix and shape) take its sharding;
  the rest (counts, factored statistics) are replicated."""
  by_path = {}
  for (path, leaf), sharding in zip(jax.tree_util.tree_flatten_with_path(abstract_params)[0],
                                    jax.tree_util.tree_leaves(param_shardings)):
    by_path[_path_key(path)] = (leaf.shape, sharding)
  replicated = NamedSharding(mesh, PartitionSpec())

  def sharding_of(path, leaf):
    key = _path_key(path)
    for start in range(len(key)):
      shape, sharding = by_path.get(key[start:], (None, None))
      if shape == leaf.shape:
        return sharding
    return replicated

  return jax.tree_util.tree_map_with_path(sharding_of, abstract_opt_state)


def state_shardings(abstract_params: Any, param_shardings: Any, optimizer: optax.GradientTransformation,
                    mesh: Mesh, memory_sharding: NamedSharding | None = None) -> TrainState:
  abstract_opt_state = jax.eval_shape(optimizer.init, abstract_params)
  replicated = NamedSharding(mesh, PartitionSpec())
  return TrainState(step=replicated, params=param_shardings, rng=replicated, memory=memory_sharding,
                    opt_state=opt_state_shardings(abstract_opt_state, abstract_params, param_shardings, mesh))


def abstract_memory(memory_spec: tuple | None) -> jax.ShapeDtypeStruct | None:
  """The memory's ShapeDtypeStruct from an objective's memory_spec (shape, dtype); None without memory."""
  return None if memory_spec is None else jax.ShapeDtypeStruct(*memory_spec)


def abstract_state(abstract_params: Any, optimizer: optax.GradientTransformation, shardings: TrainState,
                   memory_spec: tuple | None = None) -> TrainState:
  """ShapeDtypeStructs carrying their shardings: a restore target for any mesh."""
  shapes = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=abstract_params,
                      opt_state=jax.eval_shape(optimizer.init, abstract_params),
                      rng=jax.ShapeDtypeStruct((2,), jnp.uint32), memory=abstract_memory(memory_spec))
  return jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def make_init(model: nn.Module, model_config: Any, optimizer: optax.GradientTransformation, seed: int,
              shardings: TrainState, memory_spec: tuple | None = None) -> Callable[[], TrainState]:
  """A jitted function creating parameters, optimizer state and the (zero) memory directly in their shardings
  (never whole on one device)."""
  def create() -> TrainState:
    base_key = jax.random.key(seed)
    params = nn.meta.unbox(model.init(init_rngs(base_key), **example_inputs(model_config))["params"])
    memory = None if memory_spec is None else jnp.zeros(*memory_spec)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                      rng=jax.random.key_data(base_key), memory=memory)

  init = jax.jit(create, out_shardings=shardings)
  if jax.default_backend() != "cpu":
    return init
  # It runs once: on the CPU, compiling it without XLA's backend optimizations saves seconds and costs nothing.
  compiled = functools.cache(lambda: init.lower().compile(
      compiler_options={"xla_backend_optimization_level": 0}))  # type: ignore[dict-item]  # jax's type omits ints
  return lambda: compiled()()


def logical_param_specs(boxed_params: Any) -> Any:
  return nn.get_partition_spec(boxed_params)


def param_shardings(boxed_params: Any, mesh: Mesh, rules: parallel.Rules) -> Any:
  return parallel.logical_shardings(logical_param_specs(boxed_params), mesh, rules)
