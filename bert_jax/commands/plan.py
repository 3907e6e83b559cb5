"""`bert-jax plan`: per-device memory, FLOPs, communication, fit and step time of a config on a mesh, from
the train step compiled ahead of time on virtual CPU devices."""

import argparse
import json
import math

from bert_jax import chips, cli, config as config_lib, plan as plan_lib
from bert_jax.errors import UserError

HELP = ("size a run before it costs anything: compile the train step for a mesh on virtual CPU devices and "
        "report memory per device, FLOPs, communication, whether it fits a chip and the expected step time")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  cli.add_config_argument(parser)
  parser.add_argument("--mesh", action="append", required=True,
                      help="mesh axis sizes, e.g. data=4,fsdp=8,tensor=1 (unnamed axes 1, one may be -1 with "
                           "--devices); repeat --mesh to compare meshes")
  parser.add_argument("--devices", type=int, default=None,
                      help="the device count the mesh must cover (default: the product of the mesh sizes)")
  parser.add_argument("--chip", default=None, help=f"check the fit and time a step on: {', '.join(chips.CHIPS)}")
  parser.add_argument("--batch", type=int, default=None, help="global batch size (train.batch_size)")
  parser.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                      help="compute dtype (model.dtype; default: the config's; chips train in bfloat16)")
  parser.add_argument("--fraction", type=float, default=0.4,
                      help="fraction of the chip's peak FLOP/s the compiled step reaches (default 0.4)")
  parser.add_argument("--json", action="store_true", help="print one JSON object per mesh")


def cpu_devices(count: int) -> list:
  """`count` virtual CPU devices: set up before JAX starts its backends, or taken from a running JAX."""
  import jax

  try:
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError:  # the backends are up already (another command or a test ran first)
    pass
  devices = jax.devices("cpu")
  if len(devices) < count:
    raise UserError(f"the mesh needs {count} devices but JAX runs with {len(devices)} CPU devices in this "
                    "process already; run `bert-jax plan` in a fresh process")
  return devices[:count]


def run(args) -> int:
  chip = chips.get_chip(args.chip) if args.chip is not None else None
  overrides = list(args.overrides)
  if args.batch is not None:
    overrides.append(f"train.batch_size={args.batch}")
  if args.dtype is not None:
    overrides.append(f"model.dtype={args.dtype}")
  config = config_lib.load_config(args.config, overrides)
  meshes = [plan_lib.resolve_mesh(plan_lib.parse_mesh(text), args.devices) for text in args.mesh]
  devices = cpu_devices(max(math.prod(m.values()) for m in meshes))
  for i, mesh in enumerate(meshes):
    config.mesh.update(mesh)
    count = math.prod(mesh.values())
    result = plan_lib.make_plan(config, devices[:count], chip, args.fraction)
    if args.json:
      print(json.dumps({"config": args.config, **result}), flush=True)
    else:
      print(("\n" if i else "") + describe(args.config, result), flush=True)
  return 0


def _size(n: float) -> str:
  for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
    if n >= scale:
      return f"{n / scale:,.2f} {unit}"
  return f"{n:,.0f} B"


def describe(name: str, p: dict) -> str:
  mesh = " x ".join(f"{axis}={size}" for axis, size in p["mesh"].items())
  m, c = p["memory"], p["communication_bytes_per_device"]
  lines = [
      f"{name} ({p['family']}, {p['parameters']:,} parameters) on mesh {mesh}: {p['devices']} virtual CPU "
      f"devices, {p['dtype']} compute, batch {p['batch_size']} x {p['seq_len']} tokens"
      + (f" in {p['microbatches']} microbatches" if p["microbatches"] > 1 else ""),
      f"planned in {p['seconds']} s; compiled by XLA:CPU; memory is its buffer assignment (a chip's compiler "
      "differs in detail)",
      "memory per device",
      f"  parameters                    {_size(m['parameters']):>14}",
      f"  optimizer state               {_size(m['optimizer_state']):>14}",
      f"  batch                         {_size(m['batch']):>14}",
      *([f"  memory carried between steps  {_size(m['carried_memory']):>14}"] if m["carried_memory"] else []),
      f"  temporaries (activations)     {_size(m['temporaries']):>14}",
      f"  outputs not aliased           {_size(m['outputs_not_aliased']):>14}",
      f"  total                         {_size(p['bytes_per_device']):>14}",
      "FLOPs per step (all devices)",
      f"  XLA cost analysis             {p['flops_per_step']:>14.4g}   {p['flops_per_token']:.4g} per token",
      f"  model (matrix products)       {p['model_flops_per_step']:>14.4g}   "
      f"{p['model_flops_per_token']:.4g} per token   XLA / model {p['xla_over_model']:.3f}",
      "communication per device and step (estimated from the shardings)",
      f"  FSDP all-gather (fwd + bwd)   {_size(c['fsdp_all_gather']):>14}",
      f"  gradient reduce-scatter       {_size(c['gradient_reduce_scatter']):>14}",
      f"  gradient all-reduce           {_size(c['gradient_all_reduce']):>14}",
      f"  tensor activation all-reduce  {_size(c['tensor_all_reduce']):>14}",
      f"  total                         {_size(c['total']):>14}",
  ]
  if p["chip"] is None:
    lines.append("give --chip to check the fit and estimate the step time")
  else:
    used = p["bytes_per_device"] / p["hbm_bytes"]
    lines.append(f"{p['chip']}: {'fits' if p['fits'] else 'does NOT fit'} in {_size(p['hbm_bytes'])} of HBM "
                 f"({used:.0%} used); at {p['fraction_of_peak']:.0%} of peak: step {p['step_seconds']:.3g} s, "
                 f"{p['tokens_per_second']:,.0f} tokens/s, MFU {p['mfu']:.1%}")
  return "\n".join(lines)
