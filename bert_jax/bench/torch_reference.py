"""The PyTorch side of `bert-jax bench --compare-hf`: each objective's `transformers` model trained on our batches
from our initial weights, so both frameworks do the same work per step from the same start.

A family's descriptor names the reference of each of its objectives (bert_jax.models.family.Family.bench_references,
"module:Class"), a class with:

  OWN_PARAMS: tuple[str, ...]      top-level subtrees of our parameters it needs besides the Hugging Face export
  check(config) -> None            (static) raises UserError unless transformers models the config exactly
  __init__(config, weights)        builds the torch model(s) in train mode from `weights` (export_weights)
  named_parameters() -> [(name, torch.nn.Parameter)]  what the optimizer updates
  inputs(batch) -> Any             our numpy batch as the model's tensors (converted once, before timing)
  loss(inputs) -> torch scalar     the training loss as our objective defines it (objectives.training_loss)
  OPTIMIZER_NOTE: str              (optional) what differs in the optimizer

This module and the reference modules import torch and transformers only inside functions, so that `bench`
can check a config without them; `export_weights` runs in the JAX worker and is the only function that uses JAX.
"""

from collections.abc import Callable
import importlib
import os
import re
import time
from typing import Any

import numpy as np

from bert_jax.errors import UserError


def reference_path(config: Any) -> str:
  """"module:Class" of the config's reference, from its family's descriptor (imports the model modules, so JAX: the
  torch worker gets the path from the parent instead)."""
  from bert_jax import models

  name = config.objective.name
  references = models.descriptor(config.model).bench_references
  if name not in references:
    compared = [f"{objective} ({f.name})" for f in models.descriptors() for objective in f.bench_references]
    raise UserError(f"--compare-hf has no transformers reference for objective '{name}' on model.family="
                    f"{config.model.family}; it compares {', '.join(compared)}")
  return references[name]


def load_reference(path: str) -> type[Any]:
  module_name, class_name = path.split(":")
  return getattr(importlib.import_module(module_name), class_name)


def reference_class(config: Any) -> type[Any]:
  return load_reference(reference_path(config))


def check_hf_comparable(config: Any) -> None:
  if config.model.dtype not in ("float32", "bfloat16"):
    raise UserError("--compare-hf compares float32 training, or bfloat16 compute against torch.autocast; set "
                    "--config.model.dtype=float32 or bfloat16")
  reference_class(config).check(config)


def export_weights(config: Any, params: Any) -> dict:
  """Our parameters as the reference loads them: {"hf_config", "state_dict", "companions", "own"} of numpy arrays
  (JAX worker side)."""
  from flax import traverse_util

  from bert_jax import convert

  hf_config, state_dict = convert.to_hf(config.model, params)
  own_names = reference_class(config).OWN_PARAMS
  own = {f"{name}/{key}": np.asarray(x) for name in own_names
         for key, x in traverse_util.flatten_dict(params[name], sep="/").items()}
  return {"hf_config": hf_config, "state_dict": state_dict, "own": own,
          "companions": convert.to_hf_companions(config.model, params)}


def save_weights(weights: dict, path: str) -> None:
  import json

  arrays = {f"state_dict/{k}": v for k, v in weights["state_dict"].items()}
  arrays |= {f"own/{k}": v for k, v in weights["own"].items()}
  configs = {"hf_config": weights["hf_config"], "companions": {}}
  for name, (hf_config, state_dict) in weights["companions"].items():
    configs["companions"][name] = hf_config
    arrays |= {f"companion/{name}/{k}": v for k, v in state_dict.items()}
  np.savez(path, **arrays)
  with open(path + ".json", "w") as f:
    json.dump(configs, f)


def load_weights(path: str) -> dict:
  import json

  with open(path + ".json") as f:
    configs = json.load(f)
  weights = {"hf_config": configs["hf_config"], "state_dict": {}, "own": {},
             "companions": {name: (hf_config, {}) for name, hf_config in configs["companions"].items()}}
  with np.load(path) as data:
    for key in data.files:
      kind, rest = key.split("/", 1)
      if kind == "companion":
        name, rest = rest.split("/", 1)
        weights["companions"][name][1][rest] = data[key]
      else:
        weights[kind][rest] = data[key]
  return weights


def hf_model(hf_config: dict, state_dict: dict):
  """The transformers model `hf_config` names (its first architecture) with `state_dict` loaded, in train mode;
  only keys transformers ties to others may be missing."""
  import torch
  import transformers

  model = getattr(transformers, hf_config["architectures"][0])(transformers.AutoConfig.for_model(**hf_config))
  missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()},
                                              strict=False)
  tied = set(getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or ())
  untied = [k for k in missing if k not in tied and not any(k.endswith(t) for t in tied)]
  if untied or unexpected:
    raise RuntimeError(f"{hf_config['architectures'][0]} did not take the exported weights: missing {untied[:3]}, "
                       f"unexpected {unexpected[:3]}")
  model.tie_weights()
  return model.train()


def make_optimizer(config: Any, named: list[tuple[str, Any]]):
  """torch's counterpart of our optimizer: AdamW for adamw (and for lamb, which torch.optim lacks), transformers'
  Adafactor for adafactor; weight decay off biases and normalization scales as ours (train.optimizers)."""
  import torch

  o = config.optimizer
  no_decay = lambda name: name.endswith("bias") or "norm" in name.lower() or re.search(r"(^|\.)ln_", name)
  groups = [{"params": [p for n, p in named if not no_decay(n)], "weight_decay": o.weight_decay},
            {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0}]
  if o.name == "adafactor":
    from transformers.optimization import Adafactor

    # scale_parameter: the step times max(RMS(parameter), 1e-3), as ours (train.optimizers.adafactor)
    return Adafactor(groups, lr=o.learning_rate, relative_step=False, scale_parameter=True, warmup_init=False)
  return torch.optim.AdamW(groups, lr=o.learning_rate, betas=(o.b1, o.b2), eps=o.eps)


def optimizer_name(config: Any) -> str:
  return {"adafactor": "transformers Adafactor", "lamb": "AdamW (torch.optim has no LAMB)"}.get(
      config.optimizer.name, "AdamW")


class TorchStep:
  """One reference's train step (forward, backward, clipping, optimizer) on all CPU threads; with model.dtype
  bfloat16 the forward runs under torch.autocast("cpu", torch.bfloat16), parameters and optimizer in float32 as
  ours."""

  def __init__(self, config: Any, batches: list[dict], weights: dict, reference: str | None = None):
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    cls = load_reference(reference) if reference else reference_class(config)  # reference: reference_path's
    cls.check(config)
    self.reference = cls(config, weights)
    named = list(self.reference.named_parameters())
    self.parameters = [p for _, p in named]
    self.optimizer = make_optimizer(config, named)
    self.clip_norm = config.train.clip_norm
    self.bfloat16 = config.model.dtype == "bfloat16"
    self.batches = [self.reference.inputs(b) for b in batches]
    self.steps = 0
    self.losses: list[float] = []
    self.compile_seconds = None
    self.description = {"torch_threads": torch.get_num_threads(), "model": type(self.reference).__name__,
                        "architecture": weights["hf_config"]["architectures"][0],
                        "optimizer": optimizer_name(config),
                        "compute": "bfloat16 autocast" if self.bfloat16 else "float32"}
    self.first_step_seconds = self.run(1)[0]

  def run(self, steps: int) -> list[float]:
    import torch

    times = []
    for _ in range(steps):
      start = time.perf_counter()
      with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
        loss = self.reference.loss(self.batches[self.steps % len(self.batches)])
      loss.backward()
      if self.clip_norm:
        torch.nn.utils.clip_grad_norm_(self.parameters, self.clip_norm)
      self.optimizer.step()
      self.optimizer.zero_grad(set_to_none=True)
      times.append(time.perf_counter() - start)
      self.losses.append(float(loss.detach()))
      self.steps += 1
    return times

  def peak_matmul(self, size: int) -> Callable[[], Any]:
    """A [size, size] x [size, size] product in the compute dtype in PyTorch (its BLAS, all threads)."""
    import torch

    dtype = torch.bfloat16 if self.bfloat16 else torch.float32
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    return lambda: torch.mm(a, b)
