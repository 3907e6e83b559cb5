"""The files of a conversion: Hugging Face model directories and our Orbax parameter checkpoints."""

import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import safetensors
import safetensors.numpy

from bert_jax.errors import UserError
from bert_jax.files import storage

ORBAX_ITEM_METADATA = "_METADATA"  # in every directory of one Orbax pytree item
# Checkpoints written before LayerNorm's parameters were renamed.
_LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}


def _float32(x: jax.Array) -> np.ndarray:
  return np.asarray(x, np.float32) if jnp.issubdtype(x.dtype, jnp.floating) else np.asarray(x)


def _read_safetensors(path: storage.Path) -> dict:
  if storage.is_url(path):  # safetensors maps a local file
    raise UserError(f"{path}: --from-hf reads a local Hugging Face directory; copy it from the bucket first")
  # The flax framework reads bfloat16, which numpy alone cannot.
  with safetensors.safe_open(str(path), framework="flax") as f:
    return {name: _float32(f.get_tensor(name)) for name in f.keys()}


def _read_torch(path: storage.Path) -> dict:
  try:
    import torch
  except ImportError as e:
    raise UserError(f"{path} is a PyTorch file and torch is not installed; install torch or convert "
                    "the checkpoint to model.safetensors") from e
  state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
  return {name: tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
          for name, tensor in state.items()}


def read_hf_dir(directory: str | storage.Path) -> tuple[dict, dict]:
  """(state_dict of numpy arrays, parsed config.json) of a local Hugging Face model directory."""
  directory = storage.path(directory)
  config_path = directory / "config.json"
  if not config_path.is_file():
    raise UserError(f"{config_path} not found; --from-hf needs a Hugging Face model directory")
  hf_config = json.loads(config_path.read_text())
  index = directory / "model.safetensors.index.json"
  if (directory / "model.safetensors").is_file():
    state = _read_safetensors(directory / "model.safetensors")
  elif index.is_file():
    state = {}
    for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
      state.update(_read_safetensors(directory / shard))
  elif (directory / "pytorch_model.bin").is_file():
    state = _read_torch(directory / "pytorch_model.bin")
  else:
    raise UserError(f"no model.safetensors (or pytorch_model.bin) in {directory}")
  renamed = {}
  for name, value in state.items():
    for old, new in _LEGACY_SUFFIXES.items():
      if name.endswith(old) and "LayerNorm" in name:
        name = name[:-len(old)] + new
    renamed[name] = value
  return renamed, hf_config


def write_hf_dir(directory: str | storage.Path, hf_config: dict, state_dict: dict) -> None:
  directory = storage.path(directory)
  for name in ("config.json", "model.safetensors"):
    if (directory / name).exists():
      raise UserError(f"{directory / name} already exists; choose a new --output directory")
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "model.safetensors").write_bytes(safetensors.numpy.save(
      {k: np.ascontiguousarray(v) for k, v in state_dict.items()}, metadata={"format": "pt"}))
  (directory / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")


def save_params(path: str | storage.Path, params: dict) -> None:
  """Writes a parameter tree as an Orbax StandardSave checkpoint (restorable onto any mesh)."""
  path = storage.path(path)
  if path.exists():
    raise UserError(f"{path} already exists; choose a new --output directory")
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(path, params)


def is_converted(directory: str | storage.Path) -> bool:
  """Whether `directory` is what `convert --from-hf` wrote: its config.py and its params."""
  path = storage.path(directory)
  return (path / "config.py").is_file() and (path / "params").is_dir()


def params_item(path: str | storage.Path) -> storage.Path:
  """The Orbax item that holds parameters: `path` itself (what `convert` writes, or a training checkpoint's
  STEP/params), or the `params` item of a training checkpoint's step directory."""
  path = storage.path(path)
  wanted = ("pass the params directory `convert --from-hf` wrote (OUT/params) or a training checkpoint's step "
            "(WORKDIR/checkpoints/STEP)")
  if not path.exists():
    raise UserError(f"parameter checkpoint {path} not found; {wanted}")
  for item in (path, path / "params"):
    if (item / ORBAX_ITEM_METADATA).is_file():
      return item
  listed = path.iterdir() if path.is_dir() else ()
  steps = sorted(int(p.name) for p in listed if p.name.isdigit() and (p / "params").is_dir())
  if steps:
    raise UserError(f"{path} holds the training checkpoints of steps {', '.join(map(str, steps))}; pass one step, "
                    f"e.g. --params {path / str(steps[-1])}")
  raise UserError(f"{path} is not a parameter checkpoint; {wanted}")


def restore_params(path: str | storage.Path) -> dict:
  """The parameter tree of an Orbax checkpoint (see params_item for the paths it takes)."""
  item = params_item(path)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      saved = checkpointer.metadata(item).item_metadata.tree
      if isinstance(saved, dict) and "opt_state" in saved:
        raise UserError(f"{item} holds a training state, not parameters; pass {item.parent} or "
                        f"{item.parent / 'params'}")
      # A target on one host device restores a checkpoint written on any mesh.
      target = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)
      tree = checkpointer.restore(item, target)
  except UserError:
    raise
  except Exception as error:  # any other failure to read the files: the checkpoint is damaged
    first = (str(error).strip().splitlines() or [""])[0][:200]
    raise UserError(f"cannot read the parameter checkpoint {item} ({type(error).__name__}: {first})") from None
  tree = tree.get("params", tree) if isinstance(tree, dict) else tree
  return jax.tree_util.tree_map(np.asarray, tree)
