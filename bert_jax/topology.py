"""TPU slices by name, for compiling ahead of time with the TPU's own compiler and no TPU: `v4-32`, `v5e-64`,
`v5litepod-16`, `v5p-128`, `v6e-8` (Cloud TPU accelerator types: v4 and v5p count TensorCores, two per chip, so
v4-32 is 16 chips; v5e and v6e count chips) or a topology `v4:2x2x4`, `v5e:8x8` (chips along each axis of the
interconnect). With libtpu installed (`pip install -e '.[tpu]'`), `devices` gives the slice's compile-only
devices (`jax.experimental.topologies`: nothing runs, nothing needs a TPU).
"""

from collections.abc import Iterator
import contextlib
import dataclasses
import importlib.util
import math
import os
import re
import tempfile

from bert_jax import chips as chips_lib
from bert_jax.errors import UserError

INSTALL = "pip install -e '.[tpu]'"


@dataclasses.dataclass(frozen=True)
class Topology:
  chip: chips_lib.Chip
  shape: tuple[int, ...]  # chips along each axis of one slice's interconnect
  slices: int = 1  # slices joined over the data-center network (the mesh's dcn axis)

  @property
  def name(self) -> str:
    """The topology as libtpu takes it, e.g. v4:2x2x4."""
    return f"{self.chip.name}:{'x'.join(map(str, self.shape))}"

  @property
  def chips_per_slice(self) -> int:
    return math.prod(self.shape)

  @property
  def chips(self) -> int:
    return self.chips_per_slice * self.slices

  @property
  def accelerator_type(self) -> str:
    """The Cloud TPU name of one slice, e.g. v4-32."""
    return f"{self.chip.name}-{self.chips_per_slice * self.chip.cores_per_chip}"


def tpu_chips() -> dict[str, chips_lib.Chip]:
  """Every name a TPU chip goes by in a topology or an accelerator type (v5e and v5litepod alike)."""
  return {name: chip for chip in chips_lib.CHIPS.values() if chip.torus_dims
          for name in (chip.name, *chip.cloud_names)}


def slice_shape(chip: chips_lib.Chip, chips: int) -> tuple[int, ...]:
  """The shape Cloud TPU gives a slice of `chips` chips: 2x2x1, 2x2x2, 2x2x4, 2x4x4, 4x4x4, ... (3-D) or 1x1, 2x2, 2x4,
  4x4, 4x8, 8x8, ... (2-D): each doubling doubles the last of the shortest axes."""
  shape = [2, 2, 1] if chip.torus_dims == 3 else [1, 1]
  if chips < math.prod(shape) or chips & (chips - 1):
    smallest = math.prod(shape)
    raise UserError(f"a {chip.name} slice has {smallest}, {2 * smallest}, {4 * smallest}, ... chips (powers of two), "
                    f"not {chips} chips; give a topology instead, e.g. --topology {chip.name}:"
                    f"{'x'.join(['2'] * chip.torus_dims)}")
  while math.prod(shape) < chips:
    shortest = min(shape)
    last = max(i for i, n in enumerate(shape) if n == shortest)
    shape[last] *= 2
  return tuple(shape)


def parse(text: str, slices: int = 1) -> Topology:
  """'v4-32' (an accelerator type) or 'v4:2x2x4' (a topology) -> Topology, with `slices` slices of it."""
  known = tpu_chips()
  if slices < 1:
    raise UserError(f"--slices must be 1 or more, got {slices}")
  topology = re.fullmatch(r"([a-z0-9]+):(\d+(?:x\d+)*)", text.strip().lower())
  accelerator = re.fullmatch(r"([a-z0-9]+)-(\d+)", text.strip().lower())
  match = topology or accelerator
  if match is None or match.group(1) not in known:
    raise UserError(f"--topology {text}: give a Cloud TPU type such as v4-32, v5e-64, v5p-128, v6e-8 or a topology "
                    f"such as v4:2x2x4, v5e:8x8 (chips: {', '.join(sorted(known))})")
  chip = known[match.group(1)]
  if topology:
    shape = tuple(int(n) for n in match.group(2).split("x"))
    if len(shape) != chip.torus_dims or 0 in shape:
      raise UserError(f"--topology {text}: a {chip.name} topology has {chip.torus_dims} axes of chips, e.g. "
                      f"{chip.name}:{'x'.join(['2'] * chip.torus_dims)}")
    return Topology(chip, shape, slices)
  cores = int(match.group(2))
  if cores % chip.cores_per_chip:
    raise UserError(f"--topology {text}: {chip.name} types count TensorCores, {chip.cores_per_chip} per chip; "
                    f"use an even number such as {chip.name}-8")
  return Topology(chip, slice_shape(chip, cores // chip.cores_per_chip), slices)


def libtpu_installed() -> bool:
  return importlib.util.find_spec("libtpu") is not None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
  """libtpu, loaded without a TPU, writes warnings about the TPU it does not find straight to the process's stderr
  (file descriptor 2): keep them from the user."""
  with tempfile.TemporaryFile() as sink:
    saved = os.dup(2)
    os.dup2(sink.fileno(), 2)
    try:
      yield
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def devices(topology: Topology) -> list:
  """The slices' compile-only TPU devices, one per chip (v4 and v5p as megacore chips), in slice order."""
  from jax.experimental import topologies

  # libtpu takes /tmp/libtpu_lockfile so that one process owns a TPU; compile-only devices own nothing, and a second
  # plan (or a test worker) may load it beside the first
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  options: dict[str, str | int] = {"chip_config_name": "megacore"} if topology.chip.cores_per_chip > 1 else {}
  if topology.slices > 1:
    options["num_slices"] = topology.slices
  with _quiet_stderr():
    try:
      found = topologies.get_topology_desc(platform="tpu", topology_name=topology.name, **options).devices
    except Exception as error:  # libtpu's own messages are long: keep the first line
      first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
      raise UserError(f"libtpu cannot lay out --topology {topology.name} ({first}); give a slice Cloud TPU offers, "
                      f"e.g. {topology.chip.name}:{'x'.join(['2'] * topology.chip.torus_dims)}") from None
  return list(found)
