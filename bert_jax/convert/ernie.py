"""Hugging Face ERNIE 1.0 <-> our ernie family (interface: bert_jax/convert/__init__.py).

transformers' ERNIE is BERT under the prefix `ernie.` (ErnieForPreTraining, ErnieForMaskedLM and the task models keep
BERT's head names: cls.predictions.*, cls.seq_relationship, classifier, qa_outputs), so both directions go through
the bert converter with the prefix and the class names swapped. ERNIE 2.0/3.0 checkpoints with task-type embeddings
(use_task_id true) are refused: ERNIE 1.0 has none.
"""

import re
from typing import Any

import ml_collections

from bert_jax.convert import bert as bert_convert
from bert_jax.errors import UserError
from bert_jax.models import ernie


def _renamed(names: dict, old: str, new: str) -> dict:
  return {new + name[len(old):] if name.startswith(old) else name: value for name, value in names.items()}


def from_hf(state_dict: dict, hf_config: dict) -> tuple[ml_collections.ConfigDict, dict]:
  if hf_config.get("use_task_id"):
    raise UserError("this ERNIE checkpoint has task-type embeddings (use_task_id, ERNIE 2.0/3.0); only ERNIE 1.0 "
                    "checkpoints (use_task_id false) convert")
  try:
    model_config, params = bert_convert.from_hf(_renamed(state_dict, "ernie.", "bert."),
                                                {**hf_config, "model_type": "bert"})
  except UserError as error:  # the bert converter names the bert prefix and type; this checkpoint has ERNIE's
    raise UserError(re.sub(r"\bbert\b", "ernie", str(error))) from None
  model_config.family = "ernie"
  ernie.validate(ernie.make_config(model_config))
  return model_config, params


def to_hf(model_config: Any, params: dict) -> tuple[dict, dict]:
  ernie.validate(ernie.make_config(model_config))
  hf_config, state_dict = bert_convert.to_hf(model_config, params)
  architecture = hf_config["architectures"][0].replace("Bert", "Ernie", 1)
  return ({**hf_config, "model_type": "ernie", "architectures": [architecture], "use_task_id": False},
          _renamed(state_dict, "bert.", "ernie."))
