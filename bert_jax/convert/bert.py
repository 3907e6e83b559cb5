"""Hugging Face BERT, RoBERTa and ALBERT <-> our bert family (interface: bert_jax/convert/__init__.py).

One table of (our parameter path, HF name, kind) serves both directions. HF Linear weights are
[out, in]; our kernels are [in, out], with attention q/k/v as [embed, heads, kv] and the attention
output as [heads, kv, embed]. HF ALBERT block i of group g is our block g * inner_group_num + i
(bert.owners); our share=none with an E -> H projection exports as ALBERT with one group per layer.
HF ties the MLM decoder to the word embeddings (and its bias to the head's bias), as we do.
A task model (model.head) converts as HF's <Name>ForSequenceClassification or <Name>ForQuestionAnswering: the
encoder (with the pooler where the head reads it) and classifier.* or qa_outputs.*; the head of an import is
read from the checkpoint's weights (qa_outputs or classifier present), num_labels from the classifier's rows.
"""

from typing import Any

from flax import traverse_util
import ml_collections
import numpy as np

from bert_jax import models
from bert_jax.errors import UserError
from bert_jax.models import bert, layers

# HF activation names that are one of ours under another name.
_ACTIVATION_ALIASES = {"gelu_pytorch_tanh": "gelu_new"}
_PREFIX = {"bert": "bert.", "roberta": "roberta.", "albert": "albert."}
_HEAD_PREFIX = {"bert": "cls.predictions.", "roberta": "lm_head.", "albert": "predictions."}


def to_ours(kind: str, x: np.ndarray, cfg: bert.BertConfig) -> np.ndarray:
  heads, kv = cfg.num_heads, cfg.hidden_size // cfg.num_heads
  if kind == "dense":
    return x.T
  if kind == "qkv":
    return x.T.reshape(x.shape[1], heads, kv)
  if kind == "qkv_bias":
    return x.reshape(heads, kv)
  if kind == "out":
    return x.T.reshape(heads, kv, x.shape[0])
  return x


def to_hf_kernel(kind: str, x: np.ndarray) -> np.ndarray:
  """One of our kernels or biases in the layout of a torch Linear (`kind` from the conversion table)."""
  if kind == "dense":
    return x.T
  if kind == "qkv":
    return x.reshape(x.shape[0], -1).T
  if kind == "qkv_bias":
    return x.reshape(-1)
  if kind == "out":
    return x.reshape(-1, x.shape[-1]).T
  return x


def linear_entries(ours: str, hf: str, kind: str = "dense") -> list[tuple[str, str, str]]:
  bias_kind = "qkv_bias" if kind == "qkv" else "copy"
  return [(f"{ours}/kernel", f"{hf}.weight", kind), (f"{ours}/bias", f"{hf}.bias", bias_kind)]


def norm_entries(ours: str, hf: str) -> list[tuple[str, str, str]]:
  return [(f"{ours}/scale", f"{hf}.weight", "copy"), (f"{ours}/bias", f"{hf}.bias", "copy")]


def block_entries(k: int, hf: str, model_type: str) -> list[tuple[str, str, str]]:
  """One attention and one feed-forward block: ours attention_k/ffn_k, HF's layer or albert_layer `hf`."""
  a, f = f"encoder/attention_{k}", f"encoder/ffn_{k}"
  if model_type == "albert":
    names = dict(attention=f"{hf}.attention.", attention_out=f"{hf}.attention.dense",
                 attention_norm=f"{hf}.attention.LayerNorm", intermediate=f"{hf}.ffn",
                 output=f"{hf}.ffn_output", output_norm=f"{hf}.full_layer_layer_norm")
  else:
    names = dict(attention=f"{hf}.attention.self.", attention_out=f"{hf}.attention.output.dense",
                 attention_norm=f"{hf}.attention.output.LayerNorm", intermediate=f"{hf}.intermediate.dense",
                 output=f"{hf}.output.dense", output_norm=f"{hf}.output.LayerNorm")
  table = []
  for projection in ("query", "key", "value"):
    table += linear_entries(f"{a}/self/{projection}", names["attention"] + projection, "qkv")
  table += linear_entries(f"{a}/self/out", names["attention_out"], "out")
  table += norm_entries(f"{a}/layer_norm", names["attention_norm"])
  table += linear_entries(f"{f}/intermediate", names["intermediate"])
  table += linear_entries(f"{f}/output", names["output"])
  table += norm_entries(f"{f}/layer_norm", names["output_norm"])
  return table


def _hf_groups(cfg: bert.BertConfig) -> int:
  """HF ALBERT's num_hidden_groups for our config: one group per layer when nothing is shared."""
  return cfg.num_hidden_groups if cfg.share == "all" else cfg.num_layers


def _table(cfg: bert.BertConfig, model_type: str) -> list[tuple[str, str, str]]:
  p, head = _PREFIX[model_type], _HEAD_PREFIX[model_type]
  table = []
  for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
    table.append((f"encoder/embeddings/{name}/embedding", f"{p}embeddings.{name}.weight", "copy"))
  table += norm_entries("encoder/embeddings/layer_norm", f"{p}embeddings.LayerNorm")
  if model_type == "albert":
    table += linear_entries("encoder/embedding_projection", f"{p}encoder.embedding_hidden_mapping_in")
    for g in range(_hf_groups(cfg)):
      for i in range(cfg.inner_group_num):
        table += block_entries(g * cfg.inner_group_num + i, f"{p}encoder.albert_layer_groups.{g}.albert_layers.{i}",
                        model_type)
  else:
    for k in range(cfg.num_layers):
      table += block_entries(k, f"{p}encoder.layer.{k}", model_type)
  if _has_pooler(cfg):
    table += linear_entries("encoder/pooler", f"{p}pooler" if model_type == "albert" else f"{p}pooler.dense")
  if cfg.head != "pretraining":
    return table + head_entries(cfg.head, cfg.classifier == "roberta")
  table += linear_entries("mlm_head/transform", f"{head}dense" if model_type != "bert" else f"{head}transform.dense")
  table += norm_entries("mlm_head/layer_norm", {"bert": f"{head}transform.LayerNorm", "roberta": f"{head}layer_norm",
                                         "albert": f"{head}LayerNorm"}[model_type])
  table.append(("mlm_head/bias", f"{head}bias", "copy"))
  if cfg.sentence_head != "none":
    table += linear_entries("sentence_head", {"bert": "cls.seq_relationship",
                                       "albert": "sop_classifier.classifier"}[model_type])
  return table


def _has_pooler(cfg: bert.BertConfig) -> bool:
  """Whether the model holds encoder/pooler: its pretraining config says, a task model has it for its head."""
  return cfg.pooler if cfg.head == "pretraining" else cfg.head == "classification" and cfg.classifier == "pooler"


def head_entries(head: str, dense_then_out_proj: bool) -> list[tuple[str, str, str]]:
  """The task head's table: qa_outputs (span), classifier.{dense, out_proj} (RoBERTa, ELECTRA) or classifier."""
  if head == "span":
    return linear_entries("qa_outputs", "qa_outputs")
  if dense_then_out_proj:
    return linear_entries("classifier/dense", "classifier.dense") + linear_entries("classifier/out_proj",
                                                                                   "classifier.out_proj")
  return linear_entries("classifier", "classifier")


def task_head(state_dict: dict, classifier_weight: str, pretraining_weight: str) -> dict:
  """{head, num_labels} of a checkpoint: nothing with `pretraining_weight` (a pretraining head's), else span with
  qa_outputs, classification with `classifier_weight` (num_labels its rows)."""
  if pretraining_weight in state_dict:
    return {}
  if "qa_outputs.weight" in state_dict:
    if np.shape(state_dict["qa_outputs.weight"])[0] != 2:
      raise UserError("qa_outputs.weight has not 2 rows (start, end); only extractive QA heads of 2 outputs convert")
    return {"head": "span"}
  if classifier_weight in state_dict:
    return {"head": "classification", "num_labels": int(np.shape(state_dict[classifier_weight])[0])}
  return {}


def classifier_dropout(value: float | None, dropout: float) -> float:
  """model.classifier_dropout for an HF classifier dropout: -1 (model.dropout) when it is absent or the same."""
  return -1.0 if value is None or value == dropout else float(value)


def task_config(cfg: Any) -> dict:
  """The config.json keys of a classification export: num_labels, placeholder labels, regression for one label."""
  if cfg.head != "classification":
    return {}
  names = [f"LABEL_{i}" for i in range(cfg.num_labels)]
  keys = {"num_labels": cfg.num_labels, "id2label": dict(enumerate(names)),
          "label2id": {n: i for i, n in enumerate(names)}}
  return keys | ({"problem_type": "regression"} if cfg.num_labels == 1 else {})


def hf_activation(name: str) -> str:
  name = _ACTIVATION_ALIASES.get(name, name)
  if name not in layers.ACTIVATIONS:
    raise UserError(f"Hugging Face hidden_act '{name}' has no counterpart here; "
                    f"supported: {', '.join(layers.ACTIVATIONS)}")
  return name


def check_encoder_config(hf: dict) -> None:
  """The sizes a BERT-style config.json must state, and absolute positions (BERT, RoBERTa, ALBERT, ELECTRA)."""
  required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
              "max_position_embeddings")
  missing = [k for k in required if k not in hf]
  if missing:
    raise UserError(f"Hugging Face config.json lacks {', '.join(missing)}")
  if hf.get("position_embedding_type", "absolute") != "absolute":
    raise UserError(f"position_embedding_type '{hf['position_embedding_type']}' is not supported; "
                    "only absolute positions convert")


def _model_config(hf: dict, state_dict: dict) -> ml_collections.ConfigDict:
  model_type = hf["model_type"]
  check_encoder_config(hf)
  albert = model_type == "albert"
  sentence_key = {"bert": "cls.seq_relationship.weight", "albert": "sop_classifier.classifier.weight"}
  pooler_key = _PREFIX[model_type] + ("pooler.weight" if albert else "pooler.dense.weight")
  dropout = hf.get("hidden_dropout_prob", 0.0 if albert else 0.1)
  roberta = model_type == "roberta"
  head = task_head(state_dict, "classifier.out_proj.weight" if roberta else "classifier.weight",
                   f"{_HEAD_PREFIX[model_type]}bias")
  head_dropout = hf.get("classifier_dropout_prob", 0.1) if albert else hf.get("classifier_dropout")
  return models.default_config(
      "bert", vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
      num_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
      embedding_size=hf.get("embedding_size", 128) if albert else 0, embedding_projection=albert,
      max_position=hf["max_position_embeddings"], type_vocab_size=hf.get("type_vocab_size", 2),
      position_offset=model_type == "roberta", pad_token_id=hf.get("pad_token_id") or 0,
      num_hidden_groups=hf.get("num_hidden_groups", 1) if albert else 1,
      inner_group_num=hf.get("inner_group_num", 1) if albert else 1, share="all" if albert else "none",
      hidden_act=hf_activation(hf.get("hidden_act", "gelu_new" if albert else "gelu")),
      dropout=dropout, attention_dropout=hf.get("attention_probs_dropout_prob", 0.0 if albert else 0.1),
      layer_norm_eps=hf.get("layer_norm_eps", 1e-12), initializer_range=hf.get("initializer_range", 0.02),
      pooler=pooler_key in state_dict,
      sentence_head=("sop" if albert else "nsp") if sentence_key.get(model_type) in state_dict else "none",
      classifier="roberta" if roberta else "pooler", classifier_dropout=classifier_dropout(head_dropout, dropout),
      **head)


def _check_tied(state_dict: dict, params: dict, model_type: str) -> set[str]:
  """The tied copies in `state_dict` (decoder weight and bias); they must equal what they are tied to."""
  head = _HEAD_PREFIX[model_type]
  tied = {f"{head}decoder.weight": params["encoder"]["embeddings"]["word_embeddings"]["embedding"],
          f"{head}decoder.bias": params["mlm_head"]["bias"]}
  for name, value in tied.items():
    if name in state_dict and not np.array_equal(state_dict[name], value):
      raise UserError(f"{name} differs from the weight it should be tied to; "
                      "untied MLM decoders are not supported")
  return set(tied)


def from_hf(state_dict: dict, hf_config: dict) -> tuple[ml_collections.ConfigDict, dict]:
  model_type = hf_config["model_type"]
  model_config = _model_config(hf_config, state_dict)
  cfg = bert.make_config(model_config)
  bert.validate(cfg)
  table = _table(cfg, model_type)
  missing = [hf for _, hf, _ in table if hf not in state_dict]
  if missing:
    more = " ..." if len(missing) > 3 else ""
    raise UserError(f"the {model_type} checkpoint lacks {', '.join(missing[:3])}{more}; convert a {model_type} "
                    "pretraining, masked-LM, sequence-classification or question-answering checkpoint")
  flat = {tuple(ours.split("/")): to_ours(kind, np.asarray(state_dict[hf], np.float32), cfg)
          for ours, hf, kind in table}
  params = traverse_util.unflatten_dict(flat)
  used = {hf for _, hf, _ in table}
  if cfg.head == "pretraining":
    used |= _check_tied(state_dict, params, model_type)
  unused = sorted(k for k in set(state_dict) - used if not k.endswith(("position_ids", "token_type_ids")))
  if unused:
    raise UserError(f"the {model_type} checkpoint has parameters we have no place for: "
                    f"{', '.join(unused[:3])}")
  return model_config, params


def _hf_model_type(cfg: bert.BertConfig) -> str:
  if cfg.share in ("attention", "ffn"):
    raise UserError(f"Hugging Face has no model with share={cfg.share}; "
                    "only share=all (ALBERT) or share=none exports")
  if cfg.share == "all" or cfg.embedding_projection:
    if not cfg.embedding_projection:
      raise UserError("Hugging Face ALBERT always projects embeddings; "
                      "export needs model.embedding_projection=True")
    return "albert"
  if cfg.inner_group_num != 1:
    raise UserError("model.inner_group_num > 1 exports only as ALBERT (with model.embedding_projection=True)")
  if cfg.position_offset:
    if cfg.sentence_head != "none" and cfg.head == "pretraining":
      raise UserError("Hugging Face RoBERTa has no sentence head; export needs model.sentence_head=none")
    return "roberta"
  return "bert"


def _architecture(model_type: str, cfg: bert.BertConfig) -> str:
  name = {"bert": "Bert", "roberta": "Roberta", "albert": "Albert"}[model_type]
  if cfg.head != "pretraining":
    want = "roberta" if model_type == "roberta" else "pooler"
    if cfg.head == "classification" and cfg.classifier != want:
      raise UserError(f"Hugging Face {name}ForSequenceClassification has the {want} head; "
                      f"export needs model.classifier={want}")
    return f"{name}ForSequenceClassification" if cfg.head == "classification" else f"{name}ForQuestionAnswering"
  return f"{name}ForPreTraining" if cfg.sentence_head != "none" else f"{name}ForMaskedLM"


def to_hf(model_config: Any, params: dict) -> tuple[dict, dict]:
  cfg = bert.make_config(model_config)
  model_type = _hf_model_type(cfg)
  flat = traverse_util.flatten_dict(bert.to_layout(params, cfg, scanned=False), sep="/")
  state_dict = {hf: np.asarray(to_hf_kernel(kind, np.asarray(flat[ours])), np.float32)
                for ours, hf, kind in _table(cfg, model_type)}
  hf_config = {
      "model_type": model_type, "architectures": [_architecture(model_type, cfg)],
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.intermediate_size,
      "hidden_act": cfg.hidden_act, "hidden_dropout_prob": cfg.dropout,
      "attention_probs_dropout_prob": cfg.attention_dropout, "max_position_embeddings": cfg.max_position,
      "type_vocab_size": cfg.type_vocab_size, "initializer_range": cfg.initializer_range,
      "layer_norm_eps": cfg.layer_norm_eps, "pad_token_id": cfg.pad_token_id, "tie_word_embeddings": True,
  }
  if model_type == "albert":
    hf_config.update(embedding_size=cfg.embed_dim, num_hidden_groups=_hf_groups(cfg),
                     inner_group_num=cfg.inner_group_num, classifier_dropout_prob=cfg.head_dropout)
  else:
    hf_config["classifier_dropout"] = cfg.classifier_dropout if cfg.classifier_dropout >= 0 else None
  return hf_config | task_config(cfg), state_dict
