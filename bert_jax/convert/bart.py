"""Hugging Face BartForConditionalGeneration <-> our bart family (interface: bert_jax/convert/__init__.py).

HF Linear weights are [out, in]; our kernels are [in, out], attention q/k/v as [embed, heads, kv] and the attention
output as [heads, kv, embed]. The embeddings (shared, and HF's tied copies in encoder/decoder embed_tokens and
lm_head) are one table here. `final_logits_bias` is a buffer of zeros transformers never trains: a checkpoint with a
non-zero one has no equivalent here, and the export writes zeros. transformers' LayerNorms have eps 1e-5.

A task model (model.head) converts as BartForSequenceClassification (classification_head.dense and .out_proj: ours
classifier/dense and out_proj) or BartForQuestionAnswering (qa_outputs), both ways.
"""

from typing import Any

from flax import traverse_util
import ml_collections
import numpy as np

from bert_jax import models
from bert_jax.convert.bert import linear_entries, norm_entries, task_config, task_head, to_hf_kernel
from bert_jax.errors import UserError
from bert_jax.models import bart

_CONFIG_KEYS = {  # ours: HF's
    "hidden_size": "d_model", "num_layers": "encoder_layers", "num_decoder_layers": "decoder_layers",
    "num_heads": "encoder_attention_heads", "num_decoder_heads": "decoder_attention_heads",
    "intermediate_size": "encoder_ffn_dim", "decoder_intermediate_size": "decoder_ffn_dim",
    "max_position": "max_position_embeddings", "hidden_act": "activation_function", "initializer_range": "init_std"}
_CONFIG_KEYS.update({key: key for key in (
    "vocab_size", "dropout", "attention_dropout", "activation_dropout", "scale_embedding", "pad_token_id",
    "bos_token_id", "eos_token_id", "classifier_dropout")})
_HEAD_PREFIXES = ("classification_head.", "qa_outputs.")
_ARCHITECTURES = {"pretraining": "BartForConditionalGeneration", "classification": "BartForSequenceClassification",
                  "span": "BartForQuestionAnswering"}
_TIED = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")


def _attention(ours: str, hf: str) -> list[tuple[str, str, str]]:
  rows = [entry for name, proj in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"))
          for entry in linear_entries(f"{ours}/{name}", f"{hf}.{proj}", "qkv")]
  return rows + linear_entries(f"{ours}/out", f"{hf}.out_proj", "out")


def _table(cfg: bart.BartConfig) -> list[tuple[str, str, str]]:
  """(our parameter path, HF name, kind) for every parameter of the unscanned layout."""
  rows = [("token_embedder/embedding", "model.shared.weight", "copy")]
  for stack, count in (("encoder", cfg.num_layers), ("decoder", cfg.num_decoder_layers)):
    rows += [(f"{stack}/position_embedder/embedding", f"model.{stack}.embed_positions.weight", "copy"),
             *norm_entries(f"{stack}/embedding_norm", f"model.{stack}.layernorm_embedding")]
    for k in range(count):
      ours, hf = f"{stack}/layers_{k}", f"model.{stack}.layers.{k}"
      rows += [*_attention(f"{ours}/self_attention", f"{hf}.self_attn"),
               *norm_entries(f"{ours}/self_attention_norm", f"{hf}.self_attn_layer_norm")]
      if stack == "decoder":
        rows += [*_attention(f"{ours}/cross_attention", f"{hf}.encoder_attn"),
                 *norm_entries(f"{ours}/cross_attention_norm", f"{hf}.encoder_attn_layer_norm")]
      rows += [*linear_entries(f"{ours}/fc1", f"{hf}.fc1"), *linear_entries(f"{ours}/fc2", f"{hf}.fc2"),
               *norm_entries(f"{ours}/final_norm", f"{hf}.final_layer_norm")]
  if cfg.head == "classification":
    rows += [*linear_entries("classifier/dense", "classification_head.dense"),
             *linear_entries("classifier/out_proj", "classification_head.out_proj")]
  elif cfg.head == "span":
    rows += linear_entries("qa_outputs", "qa_outputs")
  return rows


def _to_ours(kind: str, x: np.ndarray, cfg: bart.BartConfig, hf: str) -> np.ndarray:
  heads = cfg.num_decoder_heads if ".decoder." in hf else cfg.num_heads
  if kind == "dense":
    return x.T
  if kind == "qkv":
    return x.T.reshape(x.shape[1], heads, -1)
  if kind == "qkv_bias":
    return x.reshape(heads, -1)
  if kind == "out":
    return x.T.reshape(heads, -1, x.shape[0])
  return x


def from_hf(state_dict: dict, hf_config: dict) -> tuple[ml_collections.ConfigDict, dict]:
  state_dict = {(k if k.startswith(("model.", "lm_head", "final_logits_bias", *_HEAD_PREFIXES)) else f"model.{k}"): v
                for k, v in state_dict.items()}  # a bare BartModel's names
  if "model.shared.weight" not in state_dict:
    tied = next((state_dict[k] for k in _TIED if k in state_dict), None)
    state_dict = {**state_dict, "model.shared.weight": tied}
  bias = state_dict.get("final_logits_bias")
  if bias is not None and np.any(np.asarray(bias) != 0):
    raise UserError("this BART checkpoint has a non-zero final_logits_bias, which bert_jax's bart does not hold")
  if hf_config.get("normalize_before", False) or hf_config.get("add_final_layer_norm", False):
    raise UserError("this is an mBART-style (pre-LN) checkpoint; only BART's post-LN layers convert")
  decoder_start = hf_config.get("decoder_start_token_id", hf_config.get("eos_token_id", 2))
  if decoder_start != hf_config.get("eos_token_id", 2):
    raise UserError(f"the BART decoder must start with its EOS id (decoder_start_token_id={decoder_start}, "
                    f"eos_token_id={hf_config.get('eos_token_id')})")
  values = {ours: hf_config[hf] for ours, hf in _CONFIG_KEYS.items() if hf_config.get(hf) is not None}
  values.update(task_head(state_dict, "classification_head.out_proj.weight", "lm_head.weight"))
  model_config = models.default_config("bart", **values)
  cfg = bart.make_config(model_config)
  flat = {}
  for ours, hf, kind in _table(cfg):
    if state_dict.get(hf) is None:
      raise UserError(f"the Hugging Face checkpoint has no '{hf}'")
    flat[ours] = _to_ours(kind, np.asarray(state_dict[hf], np.float32), cfg, hf)
  return model_config, traverse_util.unflatten_dict(flat, sep="/")


def to_hf(model_config: Any, params: dict) -> tuple[dict, dict]:
  cfg = bart.make_config(model_config)
  if cfg.layer_norm_eps != 1e-5:
    raise UserError(f"transformers' BART has LayerNorm eps 1e-5, this model {cfg.layer_norm_eps}: it does not export")
  flat = traverse_util.flatten_dict(bart.to_layout(params, cfg, scanned=False), sep="/")
  state_dict = {hf: np.asarray(to_hf_kernel(kind, np.asarray(flat[ours])), np.float32)
                for ours, hf, kind in _table(cfg)}
  if cfg.head == "pretraining":
    state_dict["final_logits_bias"] = np.zeros((1, cfg.vocab_size), np.float32)
  hf_config = {"model_type": "bart", "architectures": [_ARCHITECTURES[cfg.head]], "is_encoder_decoder": True,
               "decoder_start_token_id": cfg.eos_token_id, "forced_eos_token_id": cfg.eos_token_id,
               "tie_word_embeddings": True, **task_config(cfg),
               **({"num_labels": 2} if cfg.head == "span" else {}),  # BartConfig's default is 3
               **{hf: getattr(cfg, ours) for ours, hf in _CONFIG_KEYS.items()}}
  return hf_config, state_dict
