"""Our spanbert family -> Hugging Face BERT (interface: bert_jax/convert/__init__.py).

SpanBERT's encoder and MLM head are BERT's, so they export through the bert converter as a `BertForMaskedLM`
directory (no pooler unless the config has one, as the release pretrains without NSP). The span-boundary head
serves pretraining only and has no place in a Hugging Face model: it is left out, and the export says so.
Imports need no converter of their own: the published SpanBERT checkpoints are model_type "bert" and come in as
the bert family.
"""

from typing import Any

from bert_jax import models
from bert_jax.convert import bert as bert_convert

EXPORT_NOTE = "the span-boundary (SBO) head is pretraining-only and was left out; the encoder and MLM head are BERT's"


def bert_model_config(model_config: Any):
  """config.model of the bert family with the encoder's and MLM head's settings."""
  settings = {k: v for k, v in dict(model_config).items() if k != "family" and not k.startswith("sbo_")}
  return models.default_config("bert", **settings)


def to_hf(model_config: Any, params: dict) -> tuple[dict, dict]:
  return bert_convert.to_hf(bert_model_config(model_config), {k: v for k, v in params.items() if k != "sbo_head"})
