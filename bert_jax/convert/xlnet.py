"""Hugging Face XLNet (XLNetLMHeadModel) <-> our xlnet family (interface: bert_jax/convert/__init__.py).

HF keeps the attention projections as [d_model, n_head, d_head], as we do; its feed-forward Linear
weights are [out, in] where our kernels are [in, out]. HF's r_w_bias, r_r_bias and r_s_bias are our
content_bias, position_bias and segment_bias; lm_loss.weight is tied to the word embeddings.
HF's bi_data (forward and backward halves of every batch) is a data option here
(objective.bi_data with a per-example `reversed` flag), so it is not part of the model config.
A task model (model.head) converts as XLNetForSequenceClassification (SequenceSummary "last" with a tanh
projection: sequence_summary.summary, then logits_proj) or XLNetForQuestionAnsweringSimple (qa_outputs).
"""

from typing import Any

from flax import traverse_util
import ml_collections
import numpy as np

from bert_jax import models
from bert_jax.convert.bert import classifier_dropout, linear_entries, norm_entries, task_config, task_head
from bert_jax.errors import UserError
from bert_jax.models import layers, xlnet

_ATTENTION = (("query", "q"), ("key", "k"), ("value", "v"), ("output", "o"), ("position", "r"),
              ("content_bias", "r_w_bias"), ("position_bias", "r_r_bias"), ("segment_bias", "r_s_bias"),
              ("segment_embedding", "seg_embed"))


def _table(cfg: xlnet.XLNetConfig) -> list[tuple[str, str, str]]:
  """(our parameter path, HF name, kind); kind says how the array changes on the way."""
  table = [("encoder/word_embeddings/embedding", "transformer.word_embedding.weight", "copy"),
           ("encoder/mask_embedding", "transformer.mask_emb", "mask_embedding")]
  if cfg.head == "pretraining":
    table.append(("lm_bias", "lm_loss.bias", "copy"))
  elif cfg.head == "span":
    table += linear_entries("qa_outputs", "qa_outputs")
  else:
    table += linear_entries("classifier/dense", "sequence_summary.summary") + linear_entries("classifier/out_proj",
                                                                                             "logits_proj")
  for k in range(cfg.num_layers):
    ours, hf = f"encoder/layer_{k}", f"transformer.layer.{k}"
    table += [(f"{ours}/attention/{a}", f"{hf}.rel_attn.{b}", "copy") for a, b in _ATTENTION]
    table += norm_entries(f"{ours}/attention/layer_norm", f"{hf}.rel_attn.layer_norm")
    for a, b in (("intermediate", "layer_1"), ("output", "layer_2")):
      table += [(f"{ours}/ffn/{a}/kernel", f"{hf}.ff.{b}.weight", "dense"),
                (f"{ours}/ffn/{a}/bias", f"{hf}.ff.{b}.bias", "copy")]
    table += norm_entries(f"{ours}/ffn/layer_norm", f"{hf}.ff.layer_norm")
  return table


# The SequenceSummary our classification head is, as XLNetConfig's defaults set it.
_SUMMARY = {"summary_type": "last", "summary_use_proj": True, "summary_activation": "tanh"}


def _check_summary(hf: dict) -> None:
  given = {k: hf.get(k, v) for k, v in _SUMMARY.items()}
  if given != _SUMMARY or hf.get("summary_proj_to_labels") or hf.get("summary_first_dropout"):
    raise UserError(f"XLNet's sequence summary converts only as {_SUMMARY} without summary_proj_to_labels or "
                    f"summary_first_dropout; this checkpoint has {given}")


def _model_config(hf: dict, state_dict: dict) -> ml_collections.ConfigDict:
  required = ("vocab_size", "d_model", "n_layer", "n_head", "d_inner")
  missing = [k for k in required if k not in hf]
  if missing:
    raise UserError(f"Hugging Face config.json lacks {', '.join(missing)}")
  if hf.get("attn_type", "bi") != "bi":
    raise UserError(f"attn_type '{hf['attn_type']}' is not supported; XLNet pretraining uses attn_type='bi'")
  d_head = hf.get("d_head") or hf["d_model"] // hf["n_head"]
  if d_head * hf["n_head"] != hf["d_model"]:
    raise UserError(f"d_head={d_head} x n_head={hf['n_head']} != d_model={hf['d_model']}; not supported")
  task = task_head(state_dict, "logits_proj.weight", "lm_loss.bias")
  if task.get("head") == "classification":
    _check_summary(hf)
  dropout = float(hf.get("dropout", 0.1))
  activation = hf.get("ff_activation", "gelu")
  if activation not in layers.ACTIVATIONS:
    raise UserError(f"ff_activation '{activation}' has no counterpart; supported: {', '.join(layers.ACTIVATIONS)}")
  return models.default_config(
      "xlnet", vocab_size=hf["vocab_size"], hidden_size=hf["d_model"], num_layers=hf["n_layer"],
      num_heads=hf["n_head"], intermediate_size=hf["d_inner"], hidden_act=activation,
      dropout=dropout, layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
      initializer_range=hf.get("initializer_range", 0.02), mem_len=hf.get("mem_len") or 0,
      reuse_len=hf.get("reuse_len") or 0, clamp_len=hf.get("clamp_len", -1),
      classifier_dropout=classifier_dropout(hf.get("summary_last_dropout", 0.1), dropout), **task)


def from_hf(state_dict: dict, hf_config: dict) -> tuple[ml_collections.ConfigDict, dict]:
  model_config = _model_config(hf_config, state_dict)
  cfg = xlnet.make_config(model_config)
  xlnet.validate(cfg)
  table = _table(cfg)
  missing = [hf for _, hf, _ in table if hf not in state_dict]
  if missing:
    raise UserError(f"the xlnet checkpoint lacks {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "")
                    + "; convert an XLNetLMHeadModel, XLNetForSequenceClassification or "
                    "XLNetForQuestionAnsweringSimple checkpoint")
  flat = {}
  for ours, hf, kind in table:
    x = np.asarray(state_dict[hf], np.float32)
    flat[tuple(ours.split("/"))] = x.T if kind == "dense" else x.reshape(-1) if kind == "mask_embedding" else x
  params = traverse_util.unflatten_dict(flat)
  tied, embedding = "lm_loss.weight", flat[("encoder", "word_embeddings", "embedding")]
  if cfg.head == "pretraining" and tied in state_dict and not np.array_equal(state_dict[tied], embedding):
    raise UserError("lm_loss.weight differs from the word embeddings; untied XLNet LM heads are not supported")
  unused = sorted(set(state_dict) - {hf for _, hf, _ in table} - ({tied} if cfg.head == "pretraining" else set()))
  if unused:
    raise UserError(f"the xlnet checkpoint has parameters we have no place for: {', '.join(unused[:3])}")
  return model_config, params


def to_hf(model_config: Any, params: dict) -> tuple[dict, dict]:
  cfg = xlnet.make_config(model_config)
  flat = traverse_util.flatten_dict(xlnet.to_layout(params, cfg, scanned=False), sep="/")
  state_dict = {}
  for ours, hf, kind in _table(cfg):
    x = np.asarray(flat[ours], np.float32)
    state_dict[hf] = x.T if kind == "dense" else x.reshape(1, 1, -1) if kind == "mask_embedding" else x
  architecture = {"pretraining": "XLNetLMHeadModel", "classification": "XLNetForSequenceClassification",
                  "span": "XLNetForQuestionAnsweringSimple"}[cfg.head]
  hf_config = task_config(cfg) | _SUMMARY | {
      "model_type": "xlnet", "architectures": [architecture], "vocab_size": cfg.vocab_size,
      "d_model": cfg.hidden_size, "n_layer": cfg.num_layers, "n_head": cfg.num_heads, "d_head": cfg.head_dim,
      "d_inner": cfg.intermediate_size, "ff_activation": cfg.hidden_act, "attn_type": "bi",
      "initializer_range": cfg.initializer_range, "layer_norm_eps": cfg.layer_norm_eps, "dropout": cfg.dropout,
      "mem_len": cfg.mem_len or None, "reuse_len": cfg.reuse_len or None, "bi_data": False,
      "clamp_len": cfg.clamp_len, "same_length": False, "tie_word_embeddings": True,
      "summary_last_dropout": cfg.head_dropout,
  }
  return hf_config, state_dict
