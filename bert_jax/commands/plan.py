"""`bert-jax plan`: per-device memory, FLOPs, communication, fit and step time of a config on a mesh, from the train
step compiled ahead of time: by the TPU's own compiler for a TPU slice (--topology, with libtpu installed), by XLA's
CUDA compiler for a GPU node (--gpu, with jax's CUDA plugin installed), else by XLA:CPU on virtual CPU devices."""

import argparse
import json
import math

from bert_jax import chips, cli, config as config_lib, gpu_targets, plan as plan_lib, topology as topology_lib
from bert_jax.errors import UserError

HELP = ("size a run before it costs anything: compile the train step for a TPU slice or a GPU node (their own "
        "compilers, no TPU or GPU needed) or a mesh of virtual CPU devices and report memory per device, FLOPs, "
        "communication, whether it fits the chip and the expected step time")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  cli.add_config_argument(parser)
  parser.add_argument("--topology", default=None,
                      help="a TPU slice: a Cloud TPU type (v4-32, v5e-64, v5p-128, v6e-8; v4 and v5p count "
                           "TensorCores, two per chip) or a topology (v4:2x2x4, v5e:8x8); the chip follows. With "
                           f"libtpu ({topology_lib.INSTALL}) the TPU compiler compiles the step")
  parser.add_argument("--gpu", choices=tuple(gpu_targets.TARGETS), default=None,
                      help="a node of NVIDIA GPUs (--gpus of them); the chip follows. With jax's CUDA plugin "
                           f"({gpu_targets.INSTALL}) XLA's CUDA compiler compiles the step, no GPU needed")
  parser.add_argument("--gpus", type=int, default=None,
                      help=f"GPUs of --gpu: 1 to {gpu_targets.GPUS_PER_NODE} in one node, or whole nodes of "
                           f"{gpu_targets.GPUS_PER_NODE} (16: two nodes) (default {gpu_targets.GPUS_PER_NODE})")
  parser.add_argument("--slices", type=int, default=1,
                      help="slices of --topology joined over the data-center network; the mesh's dcn axis spans them")
  parser.add_argument("--mesh", action="append", default=None,
                      help="mesh axis sizes, e.g. data=4,fsdp=8,tensor=1 (unnamed axes 1, one may be -1: the rest "
                           "of the devices); repeat --mesh to compare meshes (default with --topology or --gpu: the "
                           "config's mesh)")
  parser.add_argument("--devices", type=int, default=None,
                      help="the device count the mesh must cover (default: the product of the mesh sizes, or the "
                           "chips of --topology, or --gpus)")
  parser.add_argument("--chip", default=None, help=f"check the fit and time a step on: {', '.join(chips.CHIPS)}")
  parser.add_argument("--batch", type=int, default=None, help="global batch size (train.batch_size)")
  parser.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                      help="compute dtype (model.dtype; default: the config's; chips train in bfloat16)")
  parser.add_argument("--fraction", type=float, default=0.4,
                      help="fraction of the chip's peak FLOP/s the compiled step reaches (default 0.4)")
  parser.add_argument("--json", action="store_true", help="print one JSON object per mesh")


def cpu_backend(count: int = 1) -> None:
  """JAX's backend: `count` virtual CPU devices, set up before JAX starts its backends (nothing when they are up
  already: another command or a test ran first). So a TPU plan does not start libtpu's runtime to look for a TPU."""
  import jax

  try:
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError:
    pass


def cpu_devices(count: int) -> list:
  """`count` virtual CPU devices: set up before JAX starts its backends, or taken from a running JAX."""
  import jax

  cpu_backend(count)
  devices = jax.devices("cpu")
  if len(devices) < count:
    raise UserError(f"the mesh needs {count} devices but JAX runs with {len(devices)} CPU devices in this "
                    "process already; run `bert-jax plan` in a fresh process")
  return devices[:count]


def _gpu_nodes(args) -> gpu_targets.GpuNodes | None:
  if args.gpu is None:
    if args.gpus is not None:
      raise UserError("--gpus needs --gpu (the kind of GPU), e.g. --gpu h100 --gpus 8")
    return None
  if args.topology is not None:
    raise UserError("--gpu and --topology both name the chips: give one of them")
  if args.slices != 1:
    raise UserError("--slices joins TPU slices; GPU nodes are --gpus (16: two nodes of 8)")
  nodes = gpu_targets.parse(args.gpu, args.gpus if args.gpus is not None else gpu_targets.GPUS_PER_NODE)
  if args.chip is not None and args.chip != nodes.chip.name:
    raise UserError(f"--chip {args.chip} differs from --gpu {args.gpu}; leave --chip out: --gpu names the chip")
  if args.devices is not None and args.devices != nodes.gpus:
    raise UserError(f"--devices {args.devices} differs from --gpus {nodes.gpus}; leave --devices out")
  return nodes


def _chip(args, topology: topology_lib.Topology | None, nodes: gpu_targets.GpuNodes | None = None) -> chips.Chip | None:
  if nodes is not None:
    return nodes.chip
  if topology is None:
    if args.slices != 1:
      raise UserError("--slices needs --topology (the slice each of them is), e.g. --topology v5e-64 --slices 2")
    return chips.get_chip(args.chip) if args.chip is not None else None
  if args.chip is not None and args.chip != topology.chip.name:
    raise UserError(f"--chip {args.chip} differs from --topology {args.topology} ({topology.chip.name}); leave "
                    "--chip out: the topology names the chip")
  if args.devices is not None and args.devices != topology.chips:
    raise UserError(f"--devices {args.devices} differs from the {topology.chips} chips of --topology "
                    f"{args.topology} x {topology.slices} slice(s); leave --devices out")
  return topology.chip


def _meshes(args, config, topology: topology_lib.Topology | None,
            nodes: gpu_targets.GpuNodes | None = None) -> list[dict[str, int]]:
  if not args.mesh and topology is None and nodes is None:
    raise UserError("give --mesh (e.g. --mesh fsdp=8), --topology (e.g. --topology v4-32) or --gpu (e.g. --gpu h100)")
  given = [plan_lib.parse_mesh(text) for text in args.mesh] if args.mesh else [config.mesh.to_dict()]
  meshes = []
  for sizes in given:
    if topology is not None and topology.slices > 1:
      if sizes["dcn"] == 1:
        sizes["dcn"] = topology.slices
      elif sizes["dcn"] != topology.slices:
        raise UserError(f"mesh dcn={sizes['dcn']} differs from --slices {topology.slices}; the dcn axis spans the "
                        "slices: leave it out of --mesh")
    meshes.append(plan_lib.resolve_mesh(sizes, topology.chips if topology else nodes.gpus if nodes else args.devices))
  return meshes


def run(args) -> int:
  nodes = _gpu_nodes(args)
  topology = topology_lib.parse(args.topology, args.slices) if args.topology else None
  chip = _chip(args, topology, nodes)
  overrides = list(args.overrides)
  if args.batch is not None:
    overrides.append(f"train.batch_size={args.batch}")
  if args.dtype is not None:
    overrides.append(f"model.dtype={args.dtype}")
  config = config_lib.load_config(args.config, overrides)
  meshes = _meshes(args, config, topology, nodes)
  on_tpu = topology is not None and topology_lib.libtpu_installed()
  on_gpu = nodes is not None and gpu_targets.cuda_plugin_installed()
  if on_tpu:
    assert topology is not None  # on_tpu
    cpu_backend()
    devices = topology_lib.devices(topology)
  elif on_gpu:
    assert nodes is not None  # on_gpu
    cpu_backend()  # the plugin registers with JAX on the CPU and, there, skips looking for a GPU
    devices = gpu_targets.devices(nodes)
  else:
    devices = cpu_devices(max(math.prod(m.values()) for m in meshes))
  if topology is not None and not on_tpu and not args.json:
    print(f"libtpu is not installed: XLA:CPU's estimate on {topology.chips} virtual CPU devices follows, not the "
          f"TPU compiler's; for it: {topology_lib.INSTALL}", flush=True)
  if nodes is not None and not on_gpu and not args.json:
    print(f"jax's CUDA plugin is not installed: XLA:CPU's estimate on {nodes.gpus} virtual CPU devices follows, not "
          f"the CUDA compiler's; for it: {gpu_targets.INSTALL}", flush=True)
  for i, mesh in enumerate(meshes):
    if not (on_tpu or on_gpu) and mesh["dcn"] > 1:  # one process of virtual devices has no slices: the same shardings
      mesh = {**mesh, "dcn": 1, "data": mesh["data"] * mesh["dcn"]}
    config.mesh.update(mesh)
    count = math.prod(mesh.values())
    try:
      result = plan_lib.make_plan(config, devices[:count], chip, args.fraction)
    except plan_lib.DoesNotFit as refusal:
      where = " x ".join(f"{axis}={size}" for axis, size in mesh.items())
      if args.json:
        print(json.dumps({"config": args.config, "mesh": mesh, "fits": False, "compiler_says": str(refusal)}),
              flush=True)
      else:
        print(("\n" if i else "") + f"{args.config} on mesh {where}: does not fit; the compiler says: {refusal}. "
              "Shard wider (--mesh), lower --batch or data.seq_len, or set train.microbatches or model.remat=full",
              flush=True)
      continue
    if topology is not None:
      result.update(topology=topology.name, accelerator_type=topology.accelerator_type, slices=topology.slices)
    if nodes is not None:
      result.update(topology=nodes.name, nodes=nodes.nodes, gpus_per_node=nodes.per_node)
    if args.json:
      print(json.dumps({"config": args.config, **result}), flush=True)
    else:
      print(("\n" if i else "") + describe(args.config, result), flush=True)
  return 0


def _size(n: float) -> str:
  for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
    if abs(n) >= scale:
      return f"{n / scale:,.2f} {unit}"
  return f"{n:,.0f} B"


def _op(name: str) -> str:
  """A JAX op name shortened: jit(train_step)/transpose(jvp(M))/encoder/... -> backward: encoder/... A collective
  that XLA:GPU combined from several carries their names joined by ':': the first stands for them."""
  if ":" in name:
    first = _op(name.split(":")[0])
    return f"{first[:100]}{'...' if len(first) > 100 else ''} and {name.count(':')} more (combined)"
  name = name.removeprefix("jit(train_step)/")
  for prefix, label in (("transpose(jvp(", "backward: "), ("jvp(", "forward: ")):
    if name.startswith(prefix):
      rest = name.split("/", 1)
      return label + (rest[1] if len(rest) > 1 else rest[0])
  return name or "(no op name: the compiler combined several)"


def describe(name: str, p: dict) -> str:
  mesh = " x ".join(f"{axis}={size}" for axis, size in p["mesh"].items())
  m = p["memory"]
  tpu = p["compiler"] == "tpu"
  unit = {"tpu": "chip", "gpu": "GPU"}.get(p["compiler"], "device")
  if tpu:
    where = (f"{p['devices']} {p['device_kind']} chips ({p['topology']}"
             + (f" x {p['slices']} slices" if p.get("slices", 1) > 1 else "") + f", {p['accelerator_type']})")
    how = f"compiled by the TPU compiler (libtpu) in {p['compile_seconds']} s; memory is its buffer assignment"
  elif p["compiler"] == "gpu":
    where = (f"{p['devices']} {p['device_kind']} GPUs ({p['nodes']} node{'s' if p['nodes'] > 1 else ''} of "
             f"{p['gpus_per_node']}, topology {p['topology']})")
    how = (f"compiled by the CUDA compiler (XLA:GPU, jax's CUDA plugin, no GPU) in {p['compile_seconds']} s; memory "
           "is its buffer assignment")
  else:
    where = f"{p['devices']} virtual CPU devices"
    how = (f"planned in {p['seconds']} s; compiled by XLA:CPU; memory is its buffer assignment (a chip's compiler "
           "differs in detail)")
  lines = [
      f"{name} ({p['family']}, {p['parameters']:,} parameters"
      + (f" + {p['frozen_parameters']:,} frozen" if p["frozen_parameters"] else "")
      + f") on mesh {mesh}: {where}, {p['dtype']} compute, "
      f"batch {p['batch_size']} x {p['seq_len']} tokens"
      + (f" in {p['microbatches']} microbatches" if p["microbatches"] > 1 else ""),
      how,
      f"memory per {unit}",
      f"  parameters                    {_size(m['parameters']):>14}",
      f"  optimizer state               {_size(m['optimizer_state']):>14}",
      f"  batch                         {_size(m['batch']):>14}",
      *([f"  memory carried between steps  {_size(m['carried_memory']):>14}"] if m["carried_memory"] else []),
      *([f"  frozen parameters (teacher)   {_size(m['frozen_parameters']):>14}"] if m["frozen_parameters"] else []),
      f"  arguments (the above)         {_size(m['arguments']):>14}",
      f"  temporaries (activations)     {_size(m['temporaries']):>14}",
      f"  outputs not aliased           {_size(m['outputs_not_aliased']):>14}",
      f"  total                         {_size(p['bytes_per_device']):>14}",
      *([f"  {p['chip']} HBM {_size(p['hbm_bytes'])}: {'fits' if p['fits'] else 'does NOT fit'}, "
         f"{_size(p['hbm_left_bytes'])} left"] if p["chip"] else []),
      f"FLOPs per step (all {unit}s)",
      *([f"  XLA cost analysis             {p['flops_per_step']:>14.4g}   {p['flops_per_token']:.4g} per token"]
        if p["flops_per_step"] else []),
      f"  model (matrix products)       {p['model_flops_per_step']:>14.4g}   {p['model_flops_per_token']:.4g} per token"
      + (f"   XLA / model {p['xla_over_model']:.3f}" if p["xla_over_model"] else ""),
  ]
  lines += _communication(p, unit)
  if p["chip"] is None:
    lines.append("give --chip (or --topology, --gpu) to check the fit and estimate the step time")
  else:
    used = p["bytes_per_device"] / p["hbm_bytes"]
    basis = "the model FLOPs" if p["flops_per_step"] is None else "XLA's FLOPs"
    mfu = "" if p["flops_per_step"] is None else f", MFU {p['mfu']:.1%}"  # timed by the model FLOPs: MFU = fraction
    lines.append(f"{p['chip']}: {'fits' if p['fits'] else 'does NOT fit'} in {_size(p['hbm_bytes'])} of HBM "
                 f"({used:.0%} used); {basis} at {p['fraction_of_peak']:.0%} of peak: step {p['step_seconds']:.3g} s, "
                 f"{p['tokens_per_second']:,.0f} tokens/s{mfu}")
  return "\n".join(lines)


def _communication(p: dict, unit: str) -> list[str]:
  c, compiled = p["communication_bytes_per_device"], p["collectives"]
  roles = compiled["by_role"]
  lines = [
      f"communication per {unit} and step: modelled from the shardings | sent in the compiled step's collectives",
      f"  gathers (FSDP all-gather, fwd + bwd)    {_size(c['fsdp_all_gather']):>12} | {_size(roles['gather']):>12}",
      f"  gradient reductions (scatter + reduce)  "
      f"{_size(c['gradient_reduce_scatter'] + c['gradient_all_reduce']):>12} | {_size(roles['reduce']):>12}",
      f"  tensor activation all-reduce, other     {_size(c['tensor_all_reduce']):>12} | {_size(roles['other']):>12}",
      f"  total                                   {_size(c['total']):>12} | {_size(sum(roles.values())):>12}",
      "collectives in the compiled step (counted once per loop trip"
      + ("" if compiled["trip_counts_known"] else "; a loop whose trip count was not read counted once") + ")",
  ]
  for kind, k in compiled["by_kind"].items():
    if k["count"]:
      lines.append(f"  {kind:<20} {k['count']:>7,} ops   data {_size(k['data_bytes']):>12}   "
                   f"sent {_size(k['sent_bytes']):>12}")
  lines.append("  the largest (times a step runs them x ops alike):")
  for item in compiled["largest"]:
    what = f"{item['kind']}" + (f" (for {item['replaces']})" if item["replaces"] else "")
    shapes = ",".join(item["shapes"][:3]) + (",..." if len(item["shapes"]) > 3 else "")
    times = f"{item['count']} x {item['ops']}" if item["ops"] > 1 else f"{item['count']}"
    lines.append(f"    {_size(item['sent_bytes']):>11}  {times:>7} x {what} {shapes} over {item['group']}: "
                 f"{_op(item['op'])}")
  return lines
