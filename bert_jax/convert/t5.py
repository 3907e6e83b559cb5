"""Hugging Face T5 (v1.0 and v1.1) <-> our t5 family (interface: bert_jax/convert/__init__.py).

HF Linear weights are [out, in]; our kernels are [in, out], attention q/k/v as [embed, heads, kv] and
the attention output as [heads, kv, embed]. The relative position tables are [buckets, heads] in both.
Our tie_word_embeddings=True is v1.0: logits from the shared embedding scaled by hidden_size**-0.5; False is an
unscaled output through its own `logits_dense`. HF's `tie_word_embeddings=False` (saved as
`scale_decoder_outputs=False` by transformers 5) turns the scaling off: v1.1 brings its own lm_head.weight,
and a head tied to the shared embedding (what transformers 5 builds from such a config) imports as a
logits_dense that starts as a copy of the embedding: the same logits, untied from then on.
"""

from typing import Any

from flax import traverse_util
import ml_collections
import numpy as np

from bert_jax import models
from bert_jax.convert.bert import to_hf_kernel
from bert_jax.errors import UserError
from bert_jax.models import t5

_CONFIG_KEYS = {  # ours: HF's
    "vocab_size": "vocab_size", "hidden_size": "d_model", "head_dim": "d_kv", "intermediate_size": "d_ff",
    "num_layers": "num_layers", "num_decoder_layers": "num_decoder_layers", "num_heads": "num_heads",
    "relative_attention_num_buckets": "relative_attention_num_buckets",
    "relative_attention_max_distance": "relative_attention_max_distance",
    "feed_forward_proj": "feed_forward_proj", "dropout": "dropout_rate",
    "layer_norm_eps": "layer_norm_epsilon",
    "pad_token_id": "pad_token_id", "eos_token_id": "eos_token_id",
}


def _attention(ours: str, hf: str) -> list[tuple[str, str, str]]:
  return [(f"{ours}/{name}/kernel", f"{hf}.{letter}.weight", "qkv")
          for name, letter in (("query", "q"), ("key", "k"), ("value", "v"))] + [
              (f"{ours}/out/kernel", f"{hf}.o.weight", "out")]


def _mlp(ours: str, hf: str, gated: bool) -> list[tuple[str, str, str]]:
  names = ("wi_0", "wi_1", "wo") if gated else ("wi", "wo")
  return [(f"{ours}/{name}/kernel", f"{hf}.DenseReluDense.{name}.weight", "dense") for name in names]


def _table(cfg: t5.T5Config) -> list[tuple[str, str, str]]:
  """(our parameter path, HF name, kind) for every parameter of the unscanned layout."""
  gated = t5.FEED_FORWARD[cfg.feed_forward_proj][1]
  rows = [("token_embedder/embedding", "shared.weight", "copy")]
  for stack in ("encoder", "decoder"):
    rows.append((f"{stack}/relpos_bias/rel_embedding",
                 f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "copy"))
    rows.append((f"{stack}/final_norm/scale", f"{stack}.final_layer_norm.weight", "copy"))
  for k in range(cfg.num_layers):
    ours, hf = f"encoder/layers_{k}", f"encoder.block.{k}.layer"
    rows += [(f"{ours}/pre_attention_norm/scale", f"{hf}.0.layer_norm.weight", "copy"),
             *_attention(f"{ours}/attention", f"{hf}.0.SelfAttention"),
             (f"{ours}/pre_mlp_norm/scale", f"{hf}.1.layer_norm.weight", "copy"),
             *_mlp(f"{ours}/mlp", f"{hf}.1", gated)]
  for k in range(cfg.num_decoder_layers):
    ours, hf = f"decoder/layers_{k}", f"decoder.block.{k}.layer"
    rows += [(f"{ours}/pre_self_attention_norm/scale", f"{hf}.0.layer_norm.weight", "copy"),
             *_attention(f"{ours}/self_attention", f"{hf}.0.SelfAttention"),
             (f"{ours}/pre_cross_attention_norm/scale", f"{hf}.1.layer_norm.weight", "copy"),
             *_attention(f"{ours}/cross_attention", f"{hf}.1.EncDecAttention"),
             (f"{ours}/pre_mlp_norm/scale", f"{hf}.2.layer_norm.weight", "copy"),
             *_mlp(f"{ours}/mlp", f"{hf}.2", gated)]
  if not cfg.tie_word_embeddings:
    rows.append(("decoder/logits_dense/kernel", "lm_head.weight", "dense"))
  return rows


def _to_ours(kind: str, x: np.ndarray, cfg: t5.T5Config) -> np.ndarray:
  if kind == "dense":
    return x.T
  if kind == "qkv":
    return x.T.reshape(x.shape[1], cfg.num_heads, cfg.head_dim)
  if kind == "out":
    return x.T.reshape(cfg.num_heads, cfg.head_dim, x.shape[0])
  return x


def _is_tied(state_dict: dict, hf_config: dict) -> bool:
  """Whether the model is v1.0 style: logits from the shared embedding, scaled by hidden_size**-0.5."""
  scaled = hf_config.get("scale_decoder_outputs", hf_config.get("tie_word_embeddings", True))
  head, shared = state_dict.get("lm_head.weight"), state_dict.get("shared.weight")
  separate_head = head is not None and (shared is None or not np.array_equal(head, shared))
  if scaled and separate_head:
    raise UserError("this T5 checkpoint scales the decoder output like v1.0 but has its own lm_head.weight; "
                    "such a model has no equivalent here")
  return bool(scaled)


def _with_head(state_dict: dict) -> dict:
  """An unscaled output whose lm_head is the shared embedding (transformers 5 ties T5's head whatever the
  config says, so save_pretrained may leave lm_head.weight out): the head is a copy of the embedding."""
  if state_dict.get("lm_head.weight") is None:
    return {**state_dict, "lm_head.weight": state_dict["shared.weight"]}
  return state_dict


def from_hf(state_dict: dict, hf_config: dict) -> tuple[ml_collections.ConfigDict, dict]:
  values = {ours: hf_config[hf] for ours, hf in _CONFIG_KEYS.items() if hf in hf_config}
  values.setdefault("num_decoder_layers", values.get("num_layers", t5.T5Config().num_layers))
  if values.get("feed_forward_proj", "relu") not in t5.FEED_FORWARD:
    raise UserError(f"T5 feed_forward_proj '{values['feed_forward_proj']}' is not supported; "
                    f"supported: {', '.join(t5.FEED_FORWARD)}")
  if hf_config.get("decoder_start_token_id", 0) != values.get("pad_token_id", 0):
    raise UserError("the T5 decoder must start with the padding id (decoder_start_token_id == pad_token_id)")
  if "shared.weight" not in state_dict:
    state_dict = {**state_dict, "shared.weight": state_dict.get("encoder.embed_tokens.weight")}
  values["tie_word_embeddings"] = _is_tied(state_dict, hf_config)
  if not values["tie_word_embeddings"]:
    state_dict = _with_head(state_dict)
  model_config = models.default_config("t5", **values)
  cfg = t5.make_config(model_config)
  flat = {}
  for ours, hf, kind in _table(cfg):
    if state_dict.get(hf) is None:
      raise UserError(f"the Hugging Face checkpoint has no '{hf}'")
    flat[ours] = _to_ours(kind, np.asarray(state_dict[hf], np.float32), cfg)
  return model_config, traverse_util.unflatten_dict(flat, sep="/")


def to_hf(model_config: Any, params: dict) -> tuple[dict, dict]:
  cfg = t5.make_config(model_config)
  flat = traverse_util.flatten_dict(t5.to_layout(params, cfg, scanned=False), sep="/")
  state_dict = {hf: to_hf_kernel(kind, np.asarray(flat[ours])) for ours, hf, kind in _table(cfg)}
  hf_config = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
               "is_encoder_decoder": True,
               "decoder_start_token_id": cfg.pad_token_id, "tie_word_embeddings": cfg.tie_word_embeddings,
               **{hf: getattr(cfg, ours) for ours, hf in _CONFIG_KEYS.items()}}
  return hf_config, state_dict
