"""NVIDIA GPU nodes by kind and count, for compiling ahead of time with XLA's CUDA compiler and no GPU: `bert-jax plan
--gpu h100 --gpus 8` (one node of 8), `--gpus 16` (two nodes of 8). With jax's CUDA plugin installed
(`pip install -e '.[cuda]'`), `devices` gives the node's compile-only devices (`jax.experimental.topologies`, the
plugin's topology `<slices>x<hosts>x<GPUs per host>` and a target config: nothing runs, nothing needs a GPU, the
plugin skips its driver check under JAX_PLATFORMS=cpu).

The compiler takes the GPU as a GpuTargetConfigProto (xla/stream_executor/device_description.proto) in text form:
what `CudaExecutor::CreateDeviceDescription` reads from a GPU (SMs, their shared memory and registers, clock, memory
bandwidth, L2, compute capability) and the CUDA runtime and cuDNN versions it targets. `TARGETS` holds those
figures per GPU, as XLA's own specs write them (xla/tools/hlo_opt/gpu_specs: a100_sxm_80, h100_sxm; the H200 is an
H100 SXM with 141 GB of HBM3e at 4.8 TB/s); its memory comes from bert_jax.chips, the one table of HBM and peaks.
"""

import dataclasses
import importlib.util
import math

from bert_jax import chips as chips_lib
from bert_jax.errors import UserError

INSTALL = "pip install -e '.[cuda]'"
GPUS_PER_NODE = 8  # an HGX/DGX node; more GPUs are whole nodes of 8 (the hosts of the plugin's topology)
CUDA_VERSION = (12, 8, 0)  # the CUDA runtime and cuDNN the compiled step targets (jax[cuda12]'s wheels: 12.x, 9.x)
CUDNN_VERSION = (9, 8, 0)

# XLA:GPU options for a plan. Without a GPU the compiler cannot autotune its matrix products, and its untuned Triton
# GEMM emitter stops on some of them (T5-large in bfloat16: "Couldn't find output tile sizes"); cuBLAS takes every
# product instead, which the buffer assignment, the collectives and the FLOPs do not depend on (cuBLAS's workspace
# is a temporary like Triton's).
COMPILER_OPTIONS = {"xla_gpu_enable_triton_gemm": False}


@dataclasses.dataclass(frozen=True)
class GpuTarget:
  """What XLA's CUDA compiler needs of one GPU (GpuDeviceInfoProto), but its memory: bert_jax.chips holds that."""
  description: str  # device_description_str: jax's device_kind of the compile-only devices
  compute_capability: tuple[int, int]
  sms: int  # core_count
  fp32_units_per_sm: int  # fpus_per_core
  clock_ghz: float
  memory_bandwidth: int  # bytes/s
  l2_cache_bytes: int
  shared_memory_per_sm: int
  shared_memory_per_block_optin: int

  def text(self, chip: chips_lib.Chip) -> str:
    """The GpuTargetConfigProto in text form, for `get_topology_desc(target_config=...)`."""
    major, minor = self.compute_capability
    return "\n".join([
        "gpu_device_info {",
        "  threads_per_block_limit: 1024",
        "  threads_per_warp: 32",
        "  shared_memory_per_block: 49152",
        f"  shared_memory_per_core: {self.shared_memory_per_sm}",
        "  threads_per_core_limit: 2048",
        f"  core_count: {self.sms}",
        f"  fpus_per_core: {self.fp32_units_per_sm}",
        "  block_dim_limit_x: 2147483647",
        "  block_dim_limit_y: 65535",
        "  block_dim_limit_z: 65535",
        f"  memory_bandwidth: {self.memory_bandwidth}",
        f"  l2_cache_size: {self.l2_cache_bytes}",
        f"  clock_rate_ghz: {self.clock_ghz}",
        f"  device_memory_size: {chip.hbm_bytes}",
        f"  shared_memory_per_block_optin: {self.shared_memory_per_block_optin}",
        f"  cuda_compute_capability {{ major: {major} minor: {minor} }}",
        "  registers_per_core_limit: 65536",
        "  registers_per_block_limit: 65536",
        "}",
        'platform_name: "CUDA"',
        "dnn_version_info {{ major: {} minor: {} patch: {} }}".format(*CUDNN_VERSION),
        "runtime_version {{ major: {} minor: {} patch: {} }}".format(*CUDA_VERSION),
        f'device_description_str: "{self.description}"',
    ]) + "\n"


_H100 = GpuTarget("NVIDIA H100 80GB HBM3", compute_capability=(9, 0), sms=132, fp32_units_per_sm=128, clock_ghz=1.98,
                  memory_bandwidth=3_352_320_000_000, l2_cache_bytes=50 * 2 ** 20, shared_memory_per_sm=233472,
                  shared_memory_per_block_optin=232448)
TARGETS = {
    "a100": GpuTarget("NVIDIA A100-SXM4-80GB", compute_capability=(8, 0), sms=108, fp32_units_per_sm=64,
                      clock_ghz=1.41, memory_bandwidth=2_039_040_000_000, l2_cache_bytes=40 * 2 ** 20,
                      shared_memory_per_sm=167936, shared_memory_per_block_optin=166912),
    "h100": _H100,
    "h200": dataclasses.replace(_H100, description="NVIDIA H200", memory_bandwidth=4_800_000_000_000),
}


@dataclasses.dataclass(frozen=True)
class GpuNodes:
  chip: chips_lib.Chip
  gpus: int  # in all

  @property
  def nodes(self) -> int:
    return max(1, self.gpus // GPUS_PER_NODE)

  @property
  def per_node(self) -> int:
    return self.gpus // self.nodes

  @property
  def name(self) -> str:
    """The plugin's topology: slices x hosts x GPUs per host, e.g. 1x1x8, 1x2x8."""
    return f"1x{self.nodes}x{self.per_node}"

  @property
  def target(self) -> GpuTarget:
    return TARGETS[self.chip.name]


def parse(kind: str, gpus: int) -> GpuNodes:
  """--gpu h100 --gpus 16 -> two nodes of 8 H100s; up to 8 GPUs are one node, more are whole nodes of 8."""
  if kind not in TARGETS:
    raise UserError(f"--gpu {kind}: use one of {', '.join(TARGETS)}")
  if gpus < 1 or (gpus > GPUS_PER_NODE and gpus % GPUS_PER_NODE):
    raise UserError(f"--gpus {gpus}: give 1 to {GPUS_PER_NODE} GPUs of one node, or whole nodes of "
                    f"{GPUS_PER_NODE} (16, 24, ...)")
  return GpuNodes(chips_lib.get_chip(kind), gpus)


def cuda_plugin_installed() -> bool:
  """jax's CUDA PJRT plugin (jax-cuda12-pjrt, which jax[cuda12] installs)."""
  try:
    return importlib.util.find_spec("jax_plugins.xla_cuda12") is not None
  except ModuleNotFoundError:
    return False


def devices(nodes: GpuNodes) -> list:
  """The nodes' compile-only CUDA devices, one per GPU, node after node."""
  from jax.experimental import topologies

  try:
    found = topologies.get_topology_desc(platform="cuda", topology=nodes.name,
                                         target_config=nodes.target.text(nodes.chip)).devices
  except Exception as error:  # the plugin's messages are long: keep the first line
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise UserError(f"jax's CUDA plugin cannot lay out {nodes.gpus} x {nodes.chip.name} ({nodes.name}): {first}") \
        from None
  if len(found) != nodes.gpus or math.prod(map(int, nodes.name.split("x"))) != nodes.gpus:
    raise UserError(f"jax's CUDA plugin gave {len(found)} devices for topology {nodes.name}, not {nodes.gpus}")
  return sorted(found, key=lambda d: (d.process_index, d.id))
