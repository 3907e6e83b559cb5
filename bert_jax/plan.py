"""Sizing a run before it costs anything: compile the real train step ahead of time (abstract state and batch:
nothing is allocated, nothing runs) and read its memory, FLOPs and traffic. Three compilers: the TPU's own (libtpu)
for a slice's compile-only devices (`bert_jax.topology`) or XLA's CUDA compiler (jax's CUDA plugin) for a GPU node's
(`bert_jax.gpu_targets`), each giving the chip's buffer assignment and the collectives it emits; or XLA:CPU for a
mesh of virtual CPU devices, an estimate (a chip's compiler fuses and schedules differently).

Memory per device is the compiled executable's buffer assignment: arguments (parameters, optimizer state, batch) +
outputs not aliased to donated arguments + temporaries (activations kept for the backward pass and workspace).
FLOPs: the model FLOPs of bert_jax.flops (`model_flops_per_step`, the matrix products `train` and `bench` report)
and, on XLA:CPU, XLA's cost analysis of the step (`flops_per_step`, all the work XLA counts; see step_flops). The
step time is the XLA FLOPs (XLA:CPU) or the model FLOPs (TPU and GPU: their cost analyses count a scanned loop's
body once) at a stated fraction of the chips' peak.

Communication per device and step, modelled from the parameter shardings as GSPMD partitions FSDP; for a
parameter of n elements sharded over mesh axes S, with batch axes X (config.rules' `batch`, sizes > 1):
  local = n / |S - X|                          elements a device computes with
  FSDP all-gather (forward and backward)      2 (1 - 1/|S & X|) local c    c: bytes of the compute dtype
                                                                              (model.dtype) for a matrix, of the
                                                                              parameter's own dtype for a vector
  gradient reduce-scatter                     (1 - 1/|S & X|) local p      p: bytes of the parameter's dtype
  gradient all-reduce over the other axes     2 (1 - 1/|X - S|) local p / |S & X|
and tensor parallelism all-reduces activations: 2 (1 - 1/T) elements x dtype bytes per sequence on the
device (flops.tensor_all_reduce_elements). With train.microbatches = M each of these happens M times.
What the compiler emits (`collectives`, from the optimized HLO) stands beside the model: a TPU compiler turns the
gathers and scatters of the layers' kernels into collective-permutes overlapped with the products, and keeps an
all-reduce where it would not scatter (see launch/README.md, `bert-jax plan`).
"""

from collections.abc import Sequence
import math
import time
from typing import Any

import jax
import numpy as np

from bert_jax import collectives as collectives_lib, flops, gpu_targets, parallel, params as params_lib
from bert_jax.chips import Chip
from bert_jax.errors import UserError

# Nothing runs the executable: skip XLA:CPU's code generator's optimizations (same HLO, memory and costs).
COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def parse_mesh(text: str) -> dict[str, int]:
  """'data=4,fsdp=8' -> sizes of every mesh axis (unnamed axes 1, -1 allowed for the rest)."""
  sizes = {axis: 1 for axis in parallel.MESH_AXES}
  for item in filter(None, text.split(",")):
    axis, eq, value = item.partition("=")
    axis = axis.strip()
    if not eq:
      raise UserError(f"--mesh item '{item}' has no '='; write e.g. --mesh data=4,fsdp=8")
    if axis not in sizes:
      raise UserError(f"--mesh names axis '{axis}'; the axes are {', '.join(parallel.MESH_AXES)}")
    try:
      sizes[axis] = int(value)
    except ValueError:
      raise UserError(f"--mesh {axis}={value}: the size must be an integer (-1: the rest of the devices)") from None
  return sizes


def resolve_mesh(sizes: dict[str, int], devices: int | None) -> dict[str, int]:
  """Axis sizes with -1 resolved against `devices` (default: the product of the given sizes)."""
  if devices is None:
    if -1 in sizes.values():
      raise UserError("--mesh has a -1 axis (the rest): give --devices N to say how many devices there are")
    devices = math.prod(sizes.values())
  return parallel.mesh_shape(sizes, devices)


def sharded_bytes(tree: Any) -> int:
  """Bytes one device holds of a tree of ShapeDtypeStructs carrying shardings (the largest shard)."""
  return int(sum(np.prod(x.sharding.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
                 for x in jax.tree_util.tree_leaves(tree)))


def communication(trainer: Any, config: Any) -> dict[str, float]:
  """Bytes each device sends per training step, by collective (see the module docstring)."""
  mesh, rules = trainer.mesh, trainer.rules
  batch_axes = {a for a in parallel.mesh_axes("batch", rules) if mesh.shape[a] > 1}
  size = lambda axes: math.prod(mesh.shape[a] for a in axes)
  gather = scatter = reduce = 0.0
  compute = np.dtype(config.model.dtype).itemsize
  for leaf, sharding in zip(jax.tree_util.tree_leaves(trainer.abstract_params),
                            jax.tree_util.tree_leaves(trainer.param_shardings)):
    axes = {a for entry in sharding.spec if entry for a in ((entry,) if isinstance(entry, str) else entry)}
    axes = {a for a in axes if mesh.shape[a] > 1}
    local = np.prod(leaf.shape) / size(axes - batch_axes)
    stored = np.dtype(leaf.dtype).itemsize
    gathered, reduced = size(axes & batch_axes), size(batch_axes - axes)
    gather += 2 * (1 - 1 / gathered) * local * (min(compute, stored) if len(leaf.shape) > 1 else stored)
    scatter += (1 - 1 / gathered) * local * stored
    reduce += 2 * (1 - 1 / reduced) * local * stored / gathered
  tensor = mesh.shape["tensor"]
  sequences = config.train.batch_size / size(batch_axes)
  elements = flops.tensor_all_reduce_elements(config) if tensor > 1 else 0.0
  tensor_bytes = 2 * (1 - 1 / tensor) * elements * sequences * np.dtype(config.model.dtype).itemsize
  m = config.train.microbatches
  result = {"fsdp_all_gather": m * gather, "gradient_reduce_scatter": m * scatter,
            "gradient_all_reduce": m * reduce, "tensor_all_reduce": tensor_bytes}
  result["total"] = sum(result.values())
  return result


def abstract_batch(trainer: Any) -> dict:
  spec = trainer.objective.feature_spec(trainer.config.train.batch_size)
  return {name: jax.ShapeDtypeStruct(shape, dtype, sharding=trainer.batch_shardings[name])
          for name, (shape, dtype) in spec.items()}


def lower_train_step(trainer: Any) -> Any:
  """The jitted train step lowered with abstract state and batch for the trainer's devices."""
  with trainer.context():
    frozen = trainer.frozen and trainer.frozen.abstract  # parameters the objective reads, not trains (a teacher)
    return trainer._train_step.lower(trainer.abstract_state(), abstract_batch(trainer), frozen)


def step_flops(config: Any, devices: Sequence[Any], lowered: Any) -> float:
  """XLA's cost analysis of the whole step before partitioning. A cost analysis counts a loop's body once,
  so a step with scanned layers or microbatches is lowered again with layers unrolled, batch in one piece."""
  from bert_jax.train.trainer import Trainer

  if config.model.get("scan_layers", False) or config.train.microbatches > 1:
    unrolled = config.copy_and_resolve_references()
    unrolled.model.scan_layers = False
    unrolled.train.microbatches = 1
    lowered = lower_train_step(Trainer(unrolled, devices))
  costs = lowered.cost_analysis()
  return float((costs[0] if isinstance(costs, (list, tuple)) else costs)["flops"])


def compiled_collectives(compiled: Any, top: int = 12) -> dict:
  """The collectives the compiler emitted (bert_jax.collectives): by kind, by FSDP role, and the `top` that send the
  most, those of one op alike (a windowed einsum's permutes) taken together."""
  found = collectives_lib.collectives(compiled.as_text())
  alike: dict[tuple, dict] = {}
  for c in found:
    item = alike.setdefault((c.kind, c.replaces, c.op_name, c.shapes, c.group, c.count), {
        "kind": c.kind, "replaces": c.replaces, "op": c.op_name, "shapes": list(c.shapes), "group": c.group,
        "count": c.count, "ops": 0, "data_bytes": 0, "sent_bytes": 0.0})
    item["ops"] += 1
    item["data_bytes"] += c.data_bytes
    item["sent_bytes"] += c.sent_bytes
  return {
      "by_kind": collectives_lib.summary(found),
      "by_role": collectives_lib.roles(found),
      "trip_counts_known": all(c.trips_known for c in found),
      "largest": sorted(alike.values(), key=lambda item: -item["sent_bytes"])[:top],
  }


class DoesNotFit(Exception):
  """The chip's compiler found that the step cannot fit its memory (its words are the message)."""


def make_plan(config: Any, devices: Sequence[Any], chip: Chip | None = None, fraction: float = 0.4) -> dict:
  """Everything `bert-jax plan` reports for config.mesh over `devices`: virtual CPU devices (XLA:CPU compiles) or a
  TPU slice's or a GPU node's compile-only devices (the chip's compiler compiles: bert_jax.topology.devices,
  bert_jax.gpu_targets.devices)."""
  from bert_jax.train.trainer import Trainer

  if not 0.0 < fraction <= 1.0:
    raise UserError(f"--fraction must be in (0, 1], got {fraction}")
  compiler = {"tpu": "tpu", "gpu": "gpu", "cuda": "gpu"}.get(devices[0].platform, "cpu")
  on_chip = compiler != "cpu"  # a chip's own compiler
  options = {"tpu": {}, "gpu": gpu_targets.COMPILER_OPTIONS}.get(compiler, COMPILER_OPTIONS)
  start = time.perf_counter()
  trainer = Trainer(config, devices)
  lowered = lower_train_step(trainer)
  try:
    compiled = lowered.compile(compiler_options=options) if options else lowered.compile()
  except jax.errors.JaxRuntimeError as error:  # a chip's compiler refuses a step beyond its memory
    if "RESOURCE_EXHAUSTED" not in str(error):
      raise
    raise DoesNotFit(str(error).split("RESOURCE_EXHAUSTED:", 1)[-1].strip().splitlines()[0].rstrip(".")) from None
  compile_seconds = time.perf_counter() - start
  flops_per_step = None if on_chip else step_flops(config, devices, lowered)
  seconds = time.perf_counter() - start
  n = len(devices)
  state = trainer.abstract_state()
  memory = compiled.memory_analysis()
  bytes_per_device = (memory.argument_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes
                      + memory.temp_size_in_bytes)
  tokens = config.train.batch_size * config.data.seq_len
  model_per_token = flops.flops_per_token(config)
  model_per_step = model_per_token * tokens
  plan = {
      "family": config.model.family, "mesh": {axis: int(s) for axis, s in trainer.mesh.shape.items()},
      "devices": n, "compiler": compiler, "device_kind": devices[0].device_kind,
      "dtype": config.model.dtype, "batch_size": config.train.batch_size,
      "seq_len": config.data.seq_len, "microbatches": config.train.microbatches, "tokens_per_step": tokens,
      "parameters": params_lib.count(trainer.abstract_params), "seconds": round(seconds, 1),
      "frozen_parameters": trainer.frozen.count if trainer.frozen else 0,  # a teacher the step runs, not trains
      "compile_seconds": round(compile_seconds, 1), "bytes_per_device": int(bytes_per_device),
      "memory": {"parameters": sharded_bytes(state.params), "optimizer_state": sharded_bytes(state.opt_state),
                 "carried_memory": sharded_bytes(state.memory), "batch": sharded_bytes(abstract_batch(trainer)),
                 "frozen_parameters": sharded_bytes(trainer.frozen.abstract if trainer.frozen else None),
                 "arguments": int(memory.argument_size_in_bytes),
                 "outputs_not_aliased": int(memory.output_size_in_bytes - memory.alias_size_in_bytes),
                 "temporaries": int(memory.temp_size_in_bytes)},
      "flops_per_step": flops_per_step, "flops_per_token": flops_per_step / tokens if flops_per_step else None,
      "model_flops_per_step": model_per_step, "model_flops_per_token": model_per_token,
      "xla_over_model": flops_per_step / model_per_step if flops_per_step else None,
      "communication_bytes_per_device": communication(trainer, config),
      "collectives": compiled_collectives(compiled),
      "chip": None, "hbm_bytes": None, "hbm_left_bytes": None, "fits": None, "fraction_of_peak": fraction,
      "step_seconds": None, "tokens_per_second": None, "mfu": None,
  }
  if chip is not None:
    step_seconds = (flops_per_step or model_per_step) / (n * chip.peak_flops * fraction)
    plan.update(chip=chip.name, hbm_bytes=chip.hbm_bytes, hbm_left_bytes=chip.hbm_bytes - int(bytes_per_device),
                fits=bytes_per_device <= chip.hbm_bytes, step_seconds=step_seconds,
                tokens_per_second=tokens / step_seconds,
                mfu=model_per_step / (step_seconds * n * chip.peak_flops))
  return plan
