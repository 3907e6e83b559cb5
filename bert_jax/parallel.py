"""Device mesh, logical-axis rules and shardings, multi-host start-up.

The mesh has the axes ('dcn', 'data', 'fsdp', 'tensor') with sizes from config.mesh (-1: the rest of
the devices). `dcn` spans slices (TPU) or processes (GPU, CPU) over the slow network; the others lie
within one. config.rules maps the models' logical axis names to mesh axes.
"""

from collections.abc import Sequence
import math
import os
from typing import Any

import flax.linen as nn
import jax
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
import numpy as np

from bert_jax.errors import UserError

# Logical axis -> mesh axes. Batch over data and fsdp; parameters FSDP-sharded on `embed`,
# tensor-parallel on heads/mlp/vocab. A config may replace any rule.
DEFAULT_RULES = (
    ("batch", ("dcn", "data", "fsdp")),
    ("length", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv", None),
    ("mlp", "tensor"),
    ("layers", None),
    ("relpos", None),
)

MESH_AXES = ("dcn", "data", "fsdp", "tensor")
Rules = tuple[tuple[str, Any], ...]


def cluster_detected() -> bool:
  """True when JAX's cluster detection (TPU pod, SLURM, Open MPI, ...) finds a multi-process launcher."""
  from jax._src.clusters import ClusterEnv  # the detection jax.distributed.initialize() runs itself

  return any(not env.opt_in_only_method and env.is_env_present() for env in ClusterEnv._cluster_types)


def enable_compilation_cache() -> str | None:
  """A persistent XLA compilation cache, so that a resumed run, an evaluation or a rerun does not compile again:
  JAX_COMPILATION_CACHE_DIR when set, otherwise ~/.cache/bert_jax/xla (BERT_JAX_COMPILATION_CACHE=off: none)."""
  if os.environ.get("BERT_JAX_COMPILATION_CACHE") == "off":
    return None
  if not jax.config.jax_compilation_cache_dir:  # type: ignore[attr-defined]  # jax's options: dynamic attributes
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bert_jax", "xla")
    jax.config.update("jax_compilation_cache_dir", cache)
  return jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """Joins a multi-process run: explicitly (all three arguments) or as JAX's cluster detection finds it.

  Call before any JAX computation. A single process without a launcher does nothing.
  """
  explicit = (coordinator, num_processes, process_id)
  if any(v is not None for v in explicit) and any(v is None for v in explicit):
    raise UserError("give all of --coordinator, --num-processes and --process-id, or none of them")
  if coordinator is None and not cluster_detected():
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # only the CPU backend reads it
  jax.distributed.initialize(coordinator, num_processes, process_id)


def mesh_shape(mesh_config: Any, device_count: int) -> dict[str, int]:
  """Axis sizes with -1 resolved; raises UserError when they cannot cover exactly `device_count` devices."""
  sizes = {axis: int(mesh_config[axis]) for axis in MESH_AXES}
  given = " x ".join(f"{axis}={size}" for axis, size in sizes.items())
  rest = [axis for axis, size in sizes.items() if size == -1]
  if len(rest) > 1 or any(size == 0 or size < -1 for size in sizes.values()):
    raise UserError(f"mesh sizes must be positive with at most one -1 (the rest), got {given}")
  known = math.prod(size for size in sizes.values() if size != -1)
  if rest:
    if device_count % known:
      raise UserError(f"mesh {given}: {device_count} devices are not divisible by {known}; "
                      "change config.mesh so that its product divides the device count")
    sizes[rest[0]] = device_count // known
  elif known != device_count:
    raise UserError(f"mesh {given} has {known} devices but {device_count} are available; "
                    "change config.mesh (e.g. --config.mesh.data=-1 for the rest)")
  return sizes


def make_mesh(mesh_config: Any, devices: Sequence[Any] | None = None) -> Mesh:
  devices = list(jax.devices() if devices is None else devices)
  sizes = mesh_shape(mesh_config, len(devices))
  axis_types = (AxisType.Auto,) * len(MESH_AXES)
  if sizes["dcn"] == 1:
    return jax.make_mesh(tuple(sizes.values()), MESH_AXES, axis_types, devices=devices)
  inner = (1,) + tuple(sizes[axis] for axis in MESH_AXES[1:])
  outer = (sizes["dcn"],) + (1,) * (len(MESH_AXES) - 1)
  try:
    device_array = mesh_utils.create_hybrid_device_mesh(
        inner, outer, devices, process_is_granule=devices[0].platform != "tpu")
  except ValueError as e:
    granules = "slices" if devices[0].platform == "tpu" else "processes"
    raise UserError(f"mesh.dcn={sizes['dcn']} must equal the number of {granules} with equal device counts "
                    f"({e})") from e
  return Mesh(device_array, MESH_AXES, axis_types=axis_types)


def logical_rules(config: Any) -> Rules:
  """config.rules checked: every rule names a logical axis and mesh axes of MESH_AXES (or None)."""
  rules = []
  for rule in config.rules:
    if len(rule) != 2 or not isinstance(rule[0], str):
      raise UserError(f"each entry of config.rules must be (logical_name, mesh_axes), got {rule!r}")
    name, target = rule
    axes = () if target is None else (target,) if isinstance(target, str) else tuple(target)
    missing = [axis for axis in axes if axis not in MESH_AXES]
    if missing:
      raise UserError(f"config.rules maps '{name}' to mesh axis {missing[0]!r}, which the mesh does not have; "
                      f"use one of {', '.join(MESH_AXES)} (or None)")
    rules.append((name, target if target is None or isinstance(target, str) else tuple(target)))
  return tuple(rules)


def mesh_axes(logical: str, rules: Rules) -> tuple[str, ...]:
  """The mesh axes the first rule for `logical` names (flax uses the first matching rule)."""
  for name, target in rules:
    if name == logical:
      return () if target is None else (target,) if isinstance(target, str) else tuple(target)
  return ()


def axes_size(mesh: Mesh, axes: Sequence[str]) -> int:
  return math.prod(mesh.shape[axis] for axis in axes)


def batch_sharding(mesh: Mesh, rules: Rules, ndim: int = 1) -> NamedSharding:
  """Leading dimension over the mesh axes of the `batch` rule, the rest replicated."""
  axes = mesh_axes("batch", rules)
  return NamedSharding(mesh, PartitionSpec(axes or None, *([None] * (ndim - 1))))


def logical_shardings(logical_specs: Any, mesh: Mesh, rules: Rules) -> Any:
  """A tree of logical PartitionSpecs (nn.get_partition_spec of a boxed tree) -> NamedShardings."""
  return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def check_divisible(abstract: Any, logical_specs: Any, mesh: Mesh, rules: Rules) -> None:
  """Every sharded dimension must split evenly over its mesh axes; names the first that does not."""
  leaves = jax.tree_util.tree_flatten_with_path(abstract)[0]
  specs = jax.tree_util.tree_leaves(logical_specs, is_leaf=lambda x: isinstance(x, PartitionSpec))
  for (path, leaf), spec in zip(leaves, specs):
    for size, logical in zip(leaf.shape, spec):
      if logical is None:
        continue
      axes = mesh_axes(logical, rules)
      if size % axes_size(mesh, axes):
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        shown = " x ".join(f"{a}={mesh.shape[a]}" for a in axes)
        raise UserError(f"parameter {name}: its '{logical}' dimension ({size}) is not divisible by mesh {shown}; "
                        f"change config.mesh, the model size, or the rule for '{logical}' in config.rules")


def check_batch(batch_size: int, mesh: Mesh, rules: Rules, what: str) -> None:
  axes = mesh_axes("batch", rules)
  n = axes_size(mesh, axes)
  if batch_size % n:
    shown = " x ".join(f"{a}={mesh.shape[a]}" for a in axes)
    raise UserError(f"{what} ({batch_size}) is not divisible by the batch mesh axes {shown} = {n}; "
                    f"make it a multiple of {n} or change config.mesh")


def local_rows(sharding: NamedSharding, global_rows: int) -> np.ndarray:
  """The global row indices this process holds, in the order make_array_from_process_local_data expects."""
  rows: set[int] = set()
  for index in sharding.addressable_devices_indices_map((global_rows,)).values():
    assert index is not None  # a NamedSharding gives each device its slice
    rows.update(range(*index[0].indices(global_rows)))
  return np.array(sorted(rows), np.int64)
