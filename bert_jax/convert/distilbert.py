"""Hugging Face DistilBERT <-> our distilbert family (interface: bert_jax/convert/__init__.py).

One table of (our parameter path, HF name, kind) serves both directions, with the bert converter's kernel layouts
(bert_jax/convert/bert.py). HF ties vocab_projector.weight to the word embeddings, as we do. A task model converts
as DistilBertForSequenceClassification (pre_classifier and classifier: our classifier/dense and out_proj) or
DistilBertForQuestionAnswering (qa_outputs).
"""

from typing import Any

from flax import traverse_util
import ml_collections
import numpy as np

from bert_jax import models
from bert_jax.convert import bert as bert_convert
from bert_jax.convert.bert import linear_entries, norm_entries
from bert_jax.errors import UserError
from bert_jax.models import distilbert

PREFIX = "distilbert."


def _layer_entries(k: int) -> list[tuple[str, str, str]]:
  ours, hf = f"encoder/layers_{k}", f"{PREFIX}transformer.layer.{k}"
  table = []
  for projection, name in (("query", "q_lin"), ("key", "k_lin"), ("value", "v_lin")):
    table += linear_entries(f"{ours}/attention/self/{projection}", f"{hf}.attention.{name}", "qkv")
  table += linear_entries(f"{ours}/attention/self/out", f"{hf}.attention.out_lin", "out")
  table += norm_entries(f"{ours}/attention/layer_norm", f"{hf}.sa_layer_norm")
  table += linear_entries(f"{ours}/ffn/intermediate", f"{hf}.ffn.lin1")
  table += linear_entries(f"{ours}/ffn/output", f"{hf}.ffn.lin2")
  return table + norm_entries(f"{ours}/ffn/layer_norm", f"{hf}.output_layer_norm")


def _table(cfg: distilbert.DistilBertConfig) -> list[tuple[str, str, str]]:
  table = [(f"encoder/embeddings/{name}/embedding", f"{PREFIX}embeddings.{name}.weight", "copy")
           for name in ("word_embeddings", "position_embeddings")]
  table += norm_entries("encoder/embeddings/layer_norm", f"{PREFIX}embeddings.LayerNorm")
  for k in range(cfg.num_layers):
    table += _layer_entries(k)
  if cfg.head == "span":
    return table + linear_entries("qa_outputs", "qa_outputs")
  if cfg.head == "classification":
    return table + linear_entries("classifier/dense", "pre_classifier") + linear_entries("classifier/out_proj",
                                                                                        "classifier")
  table += linear_entries("mlm_head/transform", "vocab_transform")
  table += norm_entries("mlm_head/layer_norm", "vocab_layer_norm")
  return table + [("mlm_head/bias", "vocab_projector.bias", "copy")]


def _model_config(hf: dict, state_dict: dict) -> ml_collections.ConfigDict:
  missing = [k for k in ("vocab_size", "dim", "n_layers", "n_heads", "hidden_dim") if k not in hf]
  if missing:
    raise UserError(f"Hugging Face DistilBERT config.json lacks {', '.join(missing)}")
  if hf.get("sinusoidal_pos_embds", False):
    raise UserError("sinusoidal_pos_embds=true is not supported; only learned positions convert")
  dropout = hf.get("dropout", 0.1)
  head = bert_convert.task_head(state_dict, "classifier.weight", "vocab_projector.bias")
  return models.default_config(
      "distilbert", vocab_size=hf["vocab_size"], hidden_size=hf["dim"], num_layers=hf["n_layers"],
      num_heads=hf["n_heads"], intermediate_size=hf["hidden_dim"],
      max_position=hf.get("max_position_embeddings", 512), pad_token_id=hf.get("pad_token_id") or 0,
      hidden_act=bert_convert.hf_activation(hf.get("activation", "gelu")), dropout=dropout,
      attention_dropout=hf.get("attention_dropout", 0.1), initializer_range=hf.get("initializer_range", 0.02),
      classifier_dropout=hf.get("seq_classif_dropout", 0.2), **head)


def from_hf(state_dict: dict, hf_config: dict) -> tuple[ml_collections.ConfigDict, dict]:
  model_config = _model_config(hf_config, state_dict)
  cfg = distilbert.make_config(model_config)
  distilbert.validate(cfg)
  table = _table(cfg)
  missing = [hf for _, hf, _ in table if hf not in state_dict]
  if missing:
    more = " ..." if len(missing) > 3 else ""
    raise UserError(f"the distilbert checkpoint lacks {', '.join(missing[:3])}{more}; convert a DistilBERT masked-LM, "
                    "sequence-classification or question-answering checkpoint")
  bert_cfg = distilbert.bert_config(cfg)
  params = traverse_util.unflatten_dict({
      tuple(ours.split("/")): bert_convert.to_ours(kind, np.asarray(state_dict[hf], np.float32), bert_cfg)
      for ours, hf, kind in table})
  used = {hf for _, hf, _ in table}
  tied = "vocab_projector.weight"
  if cfg.head == "pretraining" and tied in state_dict:
    if not np.array_equal(state_dict[tied], params["encoder"]["embeddings"]["word_embeddings"]["embedding"]):
      raise UserError(f"{tied} differs from the word embeddings it should be tied to; untied decoders are not "
                      "supported")
    used.add(tied)
  unused = sorted(k for k in set(state_dict) - used if not k.endswith("position_ids"))
  if unused:
    raise UserError(f"the distilbert checkpoint has parameters we have no place for: {', '.join(unused[:3])}")
  return model_config, params


def _architecture(head: str) -> str:
  return {"pretraining": "DistilBertForMaskedLM", "classification": "DistilBertForSequenceClassification",
          "span": "DistilBertForQuestionAnswering"}[head]


def to_hf(model_config: Any, params: dict) -> tuple[dict, dict]:
  cfg = distilbert.make_config(model_config)
  flat = traverse_util.flatten_dict(distilbert.to_layout(params, cfg, scanned=False), sep="/")
  state_dict = {hf: np.asarray(bert_convert.to_hf_kernel(kind, np.asarray(flat[ours])), np.float32)
                for ours, hf, kind in _table(cfg)}
  hf_config = {
      "model_type": "distilbert", "architectures": [_architecture(cfg.head)], "vocab_size": cfg.vocab_size,
      "dim": cfg.hidden_size, "n_layers": cfg.num_layers, "n_heads": cfg.num_heads,
      "hidden_dim": cfg.intermediate_size, "activation": cfg.hidden_act, "dropout": cfg.dropout,
      "attention_dropout": cfg.attention_dropout, "max_position_embeddings": cfg.max_position,
      "sinusoidal_pos_embds": False, "initializer_range": cfg.initializer_range, "pad_token_id": cfg.pad_token_id,
      "seq_classif_dropout": cfg.head_dropout, "qa_dropout": cfg.dropout, "tie_word_embeddings": True,
  }
  return hf_config | bert_convert.task_config(cfg), state_dict
