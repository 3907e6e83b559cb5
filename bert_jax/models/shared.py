"""The steps every model family shares: its settings from config.model, their validation, the layer stack
(remat with a named policy, nn.scan over a `layers` axis), and the scanned <-> unscanned parameter layouts.

A family module defines its settings as a frozen dataclass deriving from `Settings` (the dataclass's
defaults are the family's defaults: `bert_jax.models.default_config` builds config.model from them), checks
them with `check`, builds its layer stacks with `remat`, `scan` or `layer_stack`, and converts layouts with
`to_layout`.
"""

from collections.abc import Iterable, Mapping, Sequence
import dataclasses
import re
from typing import TYPE_CHECKING, Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bert_jax.errors import UserError
from bert_jax.models import attention as attention_lib
from bert_jax.models.layers import REMAT_POLICIES

# model.head: the pretraining model, or a fine-tuning model whose encoder keeps the pretraining parameter names
# (classification: {"logits": [B, num_labels]}; span, extractive QA: {"start_logits", "end_logits": [B, L]}).
HEADS = ("pretraining", "classification", "span")


@dataclasses.dataclass(frozen=True)
class Settings:
  """What every family has: how its layers run, not what they compute."""
  scan_layers: bool = False  # nn.scan over the layers: compile time flat in depth
  remat: str = "none"  # none, full, dots, dots_no_batch (layers.REMAT_POLICIES)
  dtype: str = "float32"  # compute dtype; parameters stay float32
  head: str = "pretraining"  # pretraining | classification | span: what `build` returns (HEADS)
  num_labels: int = 2  # classification outputs; 1 is regression (Hugging Face's num_labels=1)
  classifier_dropout: float = -1.0  # dropout in the task head; < 0: model.dropout (HF's fallback)
  attention: str = "auto"  # xla | dot_product_attention | splash | auto (models/attention.py)
  # Implementations the family cannot take, each with what to do instead (a UserError line of `check`).
  REFUSED_ATTENTION: ClassVar[Mapping[str, str]] = {}
  # Keys this family's settings had before they took the shared names (config.json of an older run): former name ->
  # today's name. `from_config` reads a former key as today's.
  FORMER_NAMES: ClassVar[Mapping[str, str]] = {}
  if TYPE_CHECKING:  # every family's settings have it, each among its own fields (the dropout in its layers)
    dropout: float = 0.0

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def head_dropout(self) -> float:
    return self.classifier_dropout if self.classifier_dropout >= 0 else self.dropout


def from_config(cls: type, model_config: Any, family_name: str):
  """A family's frozen settings from config.model; a key the family does not know is an error. A key under one of
  the family's former names (cls.FORMER_NAMES: a run saved before the rename) is read as today's name; the same
  setting under both names is an error."""
  values = {k: v for k, v in dict(model_config).items() if k != "family"}
  for former, name in getattr(cls, "FORMER_NAMES", {}).items():
    if former in values:
      if name in values:
        raise UserError(f"model.{former} and model.{name} are one setting ({former} is its former name); "
                        f"keep only model.{name}")
      values[name] = values.pop(former)
  unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
  if unknown:
    raise UserError(f"unknown model keys for the {family_name} family: {', '.join(unknown)}")
  return cls(**values)


def check(cfg: Settings, positive: Iterable[str], divisible: Iterable[tuple[str, str]] = (),
          rates: Iterable[str] = ("dropout",), choices: Mapping[str, Iterable[str]] | None = None) -> None:
  """The checks every family makes, each failing as one UserError line: the `positive` fields are positive
  integers, in each (total, part) of `divisible` part divides total, the `rates` lie in [0, 1), each field
  of `choices` is one of its names, remat and dtype name a policy and a dtype, and attention an implementation the
  family takes."""
  for name in positive:
    value = getattr(cfg, name)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise UserError(f"model.{name} must be a positive integer, got {value!r}")
  for total, part in divisible:
    if getattr(cfg, total) % getattr(cfg, part):
      raise UserError(f"model.{total}={getattr(cfg, total)} is not divisible by model.{part}={getattr(cfg, part)}")
  for name, allowed in (choices or {}).items():
    if getattr(cfg, name) not in allowed:
      raise UserError(f"model.{name} must be one of {', '.join(allowed)}, got '{getattr(cfg, name)}'")
  if cfg.remat != "none" and cfg.remat not in REMAT_POLICIES:
    raise UserError(f"model.remat must be none or one of {', '.join(REMAT_POLICIES)}, got '{cfg.remat}'")
  for name in rates:
    if not 0.0 <= getattr(cfg, name) < 1.0:
      raise UserError(f"model.{name} must be in [0, 1), got {getattr(cfg, name)}")
  if cfg.head not in HEADS:
    raise UserError(f"model.head must be one of {', '.join(HEADS)}, got '{cfg.head}'")
  if not isinstance(cfg.num_labels, int) or isinstance(cfg.num_labels, bool) or cfg.num_labels <= 0:
    raise UserError(f"model.num_labels must be a positive integer (1: regression), got {cfg.num_labels!r}")
  if cfg.classifier_dropout >= 1.0:
    raise UserError(f"model.classifier_dropout must be below 1 (negative: model.dropout), got {cfg.classifier_dropout}")
  try:
    jnp.dtype(cfg.dtype)
  except TypeError:
    raise UserError(f"model.dtype must name a dtype (float32, bfloat16, ...), got '{cfg.dtype}'") from None
  attention_lib.check_name(cfg.attention)
  if cfg.attention in cfg.REFUSED_ATTENTION:
    raise UserError(f"model.attention={cfg.attention}: {cfg.REFUSED_ATTENTION[cfg.attention]}")


def remat(layer_cls: type, cfg: Settings) -> type:
  """The layer rematerialised with the policy cfg.remat names; as it is for remat=none."""
  if cfg.remat == "none":
    return layer_cls
  return nn.remat(layer_cls, policy=REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan_layers)


def scan(layer_cls: type, cfg: Settings, length: int, in_axes: tuple, broadcast_params: bool = False) -> type:
  """nn.scan of the (rematerialised) layer over `length` steps in the (carry, out) form, a fresh dropout key
  each step. Parameters stack on a leading `layers` axis, or with broadcast_params one set serves every step
  (layers shared across depth). `in_axes` says per extra argument: nn.broadcast, or 0 to slice per layer."""
  layer_cls = remat(layer_cls, cfg)
  if broadcast_params:
    return nn.scan(layer_cls, variable_broadcast="params", split_rngs={"params": False, "dropout": True},
                   length=length, in_axes=in_axes)
  return nn.scan(layer_cls, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                 in_axes=in_axes, length=length, metadata_params={nn.PARTITION_NAME: "layers"})


def layer_stack(layer_cls: type, cfg: Settings, deterministic: bool, length: int, in_axes: tuple,
                name: str = "layers") -> list[nn.Module]:
  """The layers of a stack, each built as layer_cls(cfg, deterministic) and called as layer(carry, *args) ->
  (carry, out): one scanned module named `name` (cfg.scan_layers), or `length` modules named name_k."""
  if cfg.scan_layers:
    return [scan(layer_cls, cfg, length, in_axes)(cfg, deterministic, name=name)]
  layer_cls = remat(layer_cls, cfg)
  return [layer_cls(cfg, deterministic, name=f"{name}_{k}") for k in range(length)]


def to_layout(params: dict, stacks: Mapping[str, Sequence[str] | str], scanned: bool) -> dict:
  """A parameter tree converted between the unscanned and scanned layouts (scanned=True: to scanned).

  `stacks` maps each subtree of the scanned layout ("encoder/layers") to the per-layer subtrees it stacks on
  a leading axis, in order (["encoder/layer_0", ...]); one path in place of the list names a subtree that
  moves whole (parameters nn.scan broadcasts to every step). A subtree already in the asked layout stays.
  """
  tree = _mutable(params)
  for scanned_path, layer_paths in stacks.items():
    if (_get(tree, scanned_path) is not None) == scanned:
      continue
    if isinstance(layer_paths, str):
      source, target = (layer_paths, scanned_path) if scanned else (scanned_path, layer_paths)
      _put(tree, target, _pop(tree, source))
    elif scanned:
      blocks = [_pop(tree, path) for path in layer_paths]
      _put(tree, scanned_path, jax.tree_util.tree_map(lambda *xs: np.stack(xs), *blocks))
    else:
      stacked = _pop(tree, scanned_path)
      for k, path in enumerate(layer_paths):
        _put(tree, path, jax.tree_util.tree_map(lambda x, k=k: x[k], stacked))
  return tree


def _mutable(tree: Any) -> Any:
  """New dicts all the way down (FrozenDicts included), the same arrays."""
  return {k: _mutable(v) for k, v in tree.items()} if isinstance(tree, Mapping) else tree


def _get(tree: dict, path: str) -> Any:
  for part in path.split("/"):
    if not isinstance(tree, dict) or part not in tree:
      return None
    tree = tree[part]
  return tree


def _pop(tree: dict, path: str) -> Any:
  """Removes the subtree at path, and the dicts above it that it leaves empty."""
  head, _, rest = path.partition("/")
  if not rest:
    return tree.pop(head)
  value = _pop(tree[head], rest)
  if not tree[head]:
    del tree[head]
  return value


def _put(tree: dict, path: str, value: Any) -> None:
  *parents, leaf = path.split("/")
  for part in parents:
    tree = tree.setdefault(part, {})
  tree[leaf] = value


LAYER_BLOCK = re.compile(r"^(?:attention|ffn|layer)_(\d+)$")  # a block of layer k in the unscanned layout


def layer_depth(path: Sequence[str], num_layers: int) -> int | np.ndarray:
  """A parameter's depth as ELECTRA's layer-wise learning-rate decay counts it (its optimization.py, _get_layer_lrs):
  0 for the embeddings (and their projection), k + 1 in layer k (NAME_k unscanned; a scanned stack `layers` gives
  each of its slices its own depth, an array [Y]), num_layers + 2 for everything above (the task head, the pooler)."""
  for part in path:
    found = LAYER_BLOCK.match(part)
    if found:
      return int(found.group(1)) + 1
    if part == "layers":
      return np.arange(1, num_layers + 1)
    if "embed" in part:
      return 0
  return num_layers + 2
