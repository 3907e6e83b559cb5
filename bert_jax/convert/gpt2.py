"""Hugging Face GPT-2 (GPT2LMHeadModel or a bare GPT2Model) <-> our gpt2 family (interface: convert/__init__.py).

HF's Conv1D weights are already [in, out], as our kernels. c_attn holds query, key and value side by side ([embed,
3 * embed]); ours are three kernels [embed, heads, kv] and the attention output [heads, kv, embed]. lm_head is tied
to wte: save_pretrained leaves it out, and a copy that is present must equal wte. The causal-mask buffers older
checkpoints carry (attn.bias, attn.masked_bias) hold no weights and are skipped.

A task model (model.head) converts as GPT2ForSequenceClassification (`score`, no bias: ours classifier/kernel) or
GPT2ForQuestionAnswering (`qa_outputs`), both ways. transformers' classifier reads the last token that is not
pad_token_id; ours reads the last real token, the same where pad_token_id is not the last real token's id.
"""

from typing import Any

from flax import traverse_util
import ml_collections
import numpy as np

from bert_jax import models
from bert_jax.convert.bert import hf_activation, task_config, task_head
from bert_jax.errors import UserError
from bert_jax.models import gpt2

PREFIX = "transformer."
_CONFIG_KEYS = {  # ours: HF's
    "vocab_size": "vocab_size", "hidden_size": "n_embd", "num_layers": "n_layer", "num_heads": "n_head",
    "max_position": "n_positions", "dropout": "resid_pdrop", "embedding_dropout": "embd_pdrop",
    "attention_dropout": "attn_pdrop", "layer_norm_eps": "layer_norm_epsilon", "initializer_range": "initializer_range",
}
_BUFFERS = (".attn.bias", ".attn.masked_bias")
_HEADS = {"classification": [("classifier/kernel", "score.weight")],
          "span": [("qa_outputs/kernel", "qa_outputs.weight"), ("qa_outputs/bias", "qa_outputs.bias")]}
_ARCHITECTURES = {"pretraining": "GPT2LMHeadModel", "classification": "GPT2ForSequenceClassification",
                  "span": "GPT2ForQuestionAnswering"}


def _table(cfg: gpt2.GPT2Config) -> list[tuple[str, str]]:
  """(our parameter path, HF name without the transformer. prefix) for every array but attention's."""
  rows = [("wte/embedding", "wte.weight"), ("wpe/embedding", "wpe.weight"),
          ("ln_f/scale", "ln_f.weight"), ("ln_f/bias", "ln_f.bias")]
  for k in range(cfg.num_layers):
    ours, hf = f"layers_{k}", f"h.{k}"
    for norm in ("ln_1", "ln_2"):
      rows += [(f"{ours}/{norm}/scale", f"{hf}.{norm}.weight"), (f"{ours}/{norm}/bias", f"{hf}.{norm}.bias")]
    for dense in ("c_fc", "c_proj"):
      rows += [(f"{ours}/mlp/{dense}/kernel", f"{hf}.mlp.{dense}.weight"),
               (f"{ours}/mlp/{dense}/bias", f"{hf}.mlp.{dense}.bias")]
  return rows


def _attention_names(k: int) -> tuple[str, str]:
  return f"h.{k}.attn.c_attn", f"h.{k}.attn.c_proj"


def _model_config(hf: dict, state_dict: dict) -> ml_collections.ConfigDict:
  missing = [name for name in ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions") if name not in hf]
  if missing:
    raise UserError(f"Hugging Face config.json lacks {', '.join(missing)}")
  for key, wanted in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                      ("add_cross_attention", False)):
    if hf.get(key, wanted) != wanted:
      raise UserError(f"GPT-2 with {key}={hf[key]} has no counterpart here; only {key}={wanted} converts")
  values = {ours: hf[name] for ours, name in _CONFIG_KEYS.items() if name in hf}
  return models.default_config(
      "gpt2", **values, intermediate_size=hf.get("n_inner") or 4 * hf["n_embd"],
      hidden_act=hf_activation(hf.get("activation_function", "gelu_new")),
      # GPT-2 has no padding token; padding rows are masked out, and its tokenizer pads with <|endoftext|> here
      pad_token_id=next((hf[k] for k in ("pad_token_id", "eos_token_id") if hf.get(k) is not None), 0),
      **task_head(state_dict, "score.weight", "lm_head.weight"))


def from_hf(state_dict: dict, hf_config: dict) -> tuple[ml_collections.ConfigDict, dict]:
  model_config = _model_config(hf_config, state_dict)
  cfg = gpt2.make_config(model_config)
  gpt2.validate(cfg)
  weights = {name.removeprefix(PREFIX): np.asarray(value, np.float32) for name, value in state_dict.items()
             if not name.endswith(_BUFFERS)}
  head = weights.pop("lm_head.weight", None)
  needed = [hf for _, hf in _table(cfg)] + [f"{name}.{part}" for k in range(cfg.num_layers)
                                            for name in _attention_names(k) for part in ("weight", "bias")]
  needed += [hf for _, hf in _HEADS.get(cfg.head, [])]
  missing = [name for name in needed if name not in weights]
  if missing:
    raise UserError(f"the gpt2 checkpoint lacks {', '.join(missing[:3])}; convert a GPT2LMHeadModel or GPT2Model")
  unused = sorted(set(weights) - set(needed))
  if unused:
    raise UserError(f"the gpt2 checkpoint has parameters we have no place for: {', '.join(unused[:3])}")
  if head is not None and not np.array_equal(head, weights["wte.weight"]):
    raise UserError("lm_head.weight differs from transformer.wte.weight; untied GPT-2 heads are not supported")
  flat = {ours: weights[hf] for ours, hf in _table(cfg)}
  flat.update({ours: weights[hf].T if hf.endswith("weight") else weights[hf] for ours, hf in _HEADS.get(cfg.head, [])})
  heads, kv = cfg.num_heads, cfg.hidden_size // cfg.num_heads
  for k in range(cfg.num_layers):
    qkv, out = _attention_names(k)
    kernels = np.split(weights[f"{qkv}.weight"], 3, axis=1)
    biases = np.split(weights[f"{qkv}.bias"], 3)
    for name, kernel, bias in zip(("query", "key", "value"), kernels, biases):
      flat[f"layers_{k}/attention/{name}/kernel"] = kernel.reshape(cfg.hidden_size, heads, kv)
      flat[f"layers_{k}/attention/{name}/bias"] = bias.reshape(heads, kv)
    flat[f"layers_{k}/attention/out/kernel"] = weights[f"{out}.weight"].reshape(heads, kv, cfg.hidden_size)
    flat[f"layers_{k}/attention/out/bias"] = weights[f"{out}.bias"]
  return model_config, traverse_util.unflatten_dict(flat, sep="/")


def to_hf(model_config: Any, params: dict) -> tuple[dict, dict]:
  cfg = gpt2.make_config(model_config)
  flat = traverse_util.flatten_dict(gpt2.to_layout(params, cfg, scanned=False), sep="/")
  state_dict = {PREFIX + hf: np.asarray(flat[ours], np.float32) for ours, hf in _table(cfg)}
  for k in range(cfg.num_layers):
    qkv, out = _attention_names(k)
    attention = lambda name, part, k=k: np.asarray(flat[f"layers_{k}/attention/{name}/{part}"], np.float32)
    state_dict[f"{PREFIX}{qkv}.weight"] = np.concatenate(
        [attention(n, "kernel").reshape(cfg.hidden_size, -1) for n in ("query", "key", "value")], axis=1)
    state_dict[f"{PREFIX}{qkv}.bias"] = np.concatenate([attention(n, "bias").reshape(-1)
                                                        for n in ("query", "key", "value")])
    state_dict[f"{PREFIX}{out}.weight"] = attention("out", "kernel").reshape(-1, cfg.hidden_size)
    state_dict[f"{PREFIX}{out}.bias"] = attention("out", "bias")
  for ours, hf in _HEADS.get(cfg.head, []):  # nn.Linear: [out, in]
    state_dict[hf] = np.asarray(flat[ours].T if hf.endswith("weight") else flat[ours], np.float32)
  hf_config = {"model_type": "gpt2", "architectures": [_ARCHITECTURES[cfg.head]], **task_config(cfg),
               "n_inner": cfg.intermediate_size,
               "activation_function": cfg.hidden_act, "pad_token_id": cfg.pad_token_id, "tie_word_embeddings": True,
               "scale_attn_weights": True, **{hf: getattr(cfg, ours) for ours, hf in _CONFIG_KEYS.items()}}
  return hf_config, state_dict
