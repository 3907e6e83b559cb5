"""The accelerator chips we know: memory and dense bfloat16 peak FLOP/s per chip, for `bert-jax plan` (fit and
step time) and for MFU (`train`'s metrics, `bench`), and how Cloud TPU names and lays out slices of each TPU chip
(`bert_jax.topology`). The one table of chip peaks."""

import dataclasses

from bert_jax.errors import UserError

GiB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Chip:
  name: str  # as `bert-jax plan --chip` takes it
  device_kinds: tuple[str, ...]  # prefixes of jax's device_kind
  hbm_bytes: int
  peak_flops: float  # dense bfloat16 FLOP/s
  torus_dims: int = 0  # a TPU's interconnect: 2 (v5e, v6e) or 3 (v4, v5p) dimensions; 0: not a TPU
  cores_per_chip: int = 1  # TensorCores per chip, which Cloud TPU names count for v4 and v5p (v4-32: 16 chips)
  cloud_names: tuple[str, ...] = ()  # other prefixes of Cloud TPU accelerator types (v5litepod-64)


CHIPS = {chip.name: chip for chip in (
    Chip("v4", ("TPU v4",), 32 * GiB, 275e12, torus_dims=3, cores_per_chip=2),
    Chip("v5e", ("TPU v5 lite", "TPU v5e"), 16 * GiB, 197e12, torus_dims=2, cloud_names=("v5litepod",)),
    # after v5e: "TPU v5" prefixes "TPU v5 lite" too
    Chip("v5p", ("TPU v5p", "TPU v5"), 95 * GiB, 459e12, torus_dims=3, cores_per_chip=2),
    Chip("a100", ("NVIDIA A100",), 80 * GiB, 312e12),
    Chip("h100", ("NVIDIA H100",), 80 * GiB, 989e12),
    Chip("v6e", ("TPU v6 lite",), 32 * GiB, 918e12, torus_dims=2),
    Chip("h200", ("NVIDIA H200",), 140 * GiB, 989e12),
)}


def get_chip(name: str) -> Chip:
  if name not in CHIPS:
    raise UserError(f"unknown chip '{name}'; use one of {', '.join(CHIPS)}")
  return CHIPS[name]


def peak_flops(device_kind: str) -> float | None:
  """Peak bfloat16 FLOP/s of one device of this jax device_kind, or None when no chip in the table matches."""
  return next((chip.peak_flops for chip in CHIPS.values() for prefix in chip.device_kinds
               if device_kind.startswith(prefix)), None)
