"""Hugging Face <-> bert_jax weight conversion: one converter module per model family.

Each family's descriptor (bert_jax.models.family.Family) names the Hugging Face `model_type`s it reads, with the
bert_jax.recipes builder of the recipe an imported model trains with (`hf_types`), and its converter module
(`converter`: bert_jax/convert/F.py for family F), which defines two pure functions on numpy arrays (no torch, no
transformers):

  from_hf(state_dict, hf_config) -> (model_config, params)
      state_dict: {HF parameter name: np.ndarray}, as save_pretrained writes it (tied copies may be
      present or absent); hf_config: the parsed config.json. Returns config.model (a ConfigDict in
      the family's defaults schema, unscanned layout) and our params as a nested dict of numpy arrays.
      Raises UserError on a config or checkpoint it cannot represent.
  COMPANIONS (optional): names of further HF models that travel with the main one, each in the subdirectory
      of that name (ELECTRA: its generator beside the discriminator). A converter with COMPANIONS takes
      from_hf(state_dict, hf_config, companions={name: (state_dict, hf_config)} of those present) and defines
      to_hf_companions(model_config, params) -> {name: (hf_config, state_dict)}.
  to_hf(model_config, params) -> (hf_config, state_dict)
      hf_config: a config.json dict with `model_type` and `architectures`; state_dict: the keys
      save_pretrained would write for that architecture (tied copies left out). Accepts any layout
      (scanned or not) that model_config describes.
  EXPORT_NOTE (optional): a line `convert --to-hf` prints, saying what the export leaves out.

`from_hf` and `to_hf` here dispatch to the right converter and check the parameter tree against the
model the config builds, so a converter only maps names and shapes. Reading and writing the files
lives in bert_jax.convert.weights.
"""

import importlib
from types import ModuleType
from typing import Any

from flax import traverse_util
import jax
import numpy as np

from bert_jax import models, params as params_lib
from bert_jax.errors import UserError


def converter(family: str) -> ModuleType:
  """The converter module of the family named `family`."""
  return importlib.import_module(models.descriptor({"family": family}).converter)


def family_and_recipe(hf_config: dict) -> tuple[str, str]:
  """(our family, the defaults builder of its recipe) of a Hugging Face config.json."""
  model_type = hf_config.get("model_type")
  known = {hf_type: (f.name, recipe) for f in models.descriptors() for hf_type, recipe in f.hf_types.items()}
  if model_type not in known:
    raise UserError(f"cannot convert Hugging Face model_type {model_type!r}; supported: {', '.join(known)}")
  return known[model_type]


def check_params(model_config: Any, params: dict) -> None:
  """Raises UserError unless `params` has exactly the names and shapes of the model's parameters."""
  module = models.family(model_config)
  cfg = module.make_config(model_config)
  module.validate(cfg)
  abstract = params_lib.abstract(model_config)
  expected = traverse_util.flatten_dict(abstract, sep="/")
  given = traverse_util.flatten_dict(params, sep="/")
  missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
  if missing or extra:
    raise UserError(f"parameters do not match the model config: missing {missing[:3]}, "
                    f"unexpected {extra[:3]}")
  wrong = [f"{k} {tuple(np.shape(given[k]))} != {expected[k].shape}" for k in expected
           if tuple(np.shape(given[k])) != expected[k].shape]
  if wrong:
    raise UserError(f"parameter shapes do not match the model config: {'; '.join(wrong[:3])}")


def companions(hf_config: dict) -> tuple[str, ...]:
  """The names of the models that travel with this one (subdirectories of its directory)."""
  return getattr(converter(family_and_recipe(hf_config)[0]), "COMPANIONS", ())


def from_hf(state_dict: dict, hf_config: dict, companion_models: dict | None = None) -> tuple[Any, dict]:
  family, _ = family_and_recipe(hf_config)
  module = converter(family)
  extra = (companion_models or {},) if getattr(module, "COMPANIONS", ()) else ()
  model_config, params = module.from_hf(state_dict, hf_config, *extra)
  check_params(model_config, params)
  return model_config, params


def to_hf(model_config: Any, params: dict) -> tuple[dict, dict]:
  params = jax.tree_util.tree_map(np.asarray, params)
  check_params(model_config, params)
  return converter(model_config.family).to_hf(model_config, params)


def to_hf_companions(model_config: Any, params: dict) -> dict:
  """{name: (hf_config, state_dict)} of the models that travel with the main one (none for most families)."""
  module = converter(model_config.family)
  if not hasattr(module, "to_hf_companions"):
    return {}
  params = jax.tree_util.tree_map(np.asarray, params)
  check_params(model_config, params)
  return module.to_hf_companions(model_config, params)
