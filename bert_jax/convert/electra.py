"""Hugging Face ELECTRA <-> our electra family (interface: bert_jax/convert/__init__.py).

The discriminator is HF's ElectraForPreTraining (the main model: what people fine-tune); the generator is
ElectraForMaskedLM, a companion model written to the subdirectory `generator` (the release publishes the two
as electra-*-discriminator and electra-*-generator). Both HF models hold a copy of the embeddings we share;
an import checks that the two copies are equal. An import without a generator starts a fresh one (seed 0) of
the family's default generator_size, for continued pretraining of a published discriminator.

Each tower is BERT's encoder under HF's `electra.` prefix, so the layer tables are convert/bert.py's.
A task model (model.head) is the discriminator's encoder with the head of ElectraForSequenceClassification
(classifier.dense, classifier.out_proj) or ElectraForQuestionAnswering (qa_outputs); the generator is
pretraining-only, so a task export writes none and a task import reads none.
"""

from typing import Any

from flax import traverse_util
import flax.linen as nn
import jax
import ml_collections
import numpy as np

from bert_jax import models
from bert_jax.convert import bert as bert_convert
from bert_jax.errors import UserError
from bert_jax.models import electra

COMPANIONS = ("generator",)
_PREFIX = "electra."
_HF_EMBEDDING_SIZE = 128  # transformers.ElectraConfig's default
_HEAD = {"discriminator": "discriminator_predictions.", "generator": "generator_predictions."}


def _tower_table(tower: str, cfg, head: str = "pretraining") -> list[tuple[str, str, str]]:
  """Embeddings, projection, layers and head of one tower (bert.BertConfig `cfg`; the task `head` for the
  discriminator of a task model): our paths and HF's names."""
  table = [(f"embeddings/{name}/embedding", f"{_PREFIX}embeddings.{name}.weight", "copy")
           for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")]
  table += bert_convert.norm_entries("embeddings/layer_norm", f"{_PREFIX}embeddings.LayerNorm")
  if cfg.embedding_projection:
    table += bert_convert.linear_entries(f"{tower}/embedding_projection", f"{_PREFIX}embeddings_project")
  for k in range(cfg.num_layers):
    table += [(ours.replace("encoder/", f"{tower}/", 1), hf, kind)
              for ours, hf, kind in bert_convert.block_entries(k, f"{_PREFIX}encoder.layer.{k}", "electra")]
  if head != "pretraining":
    return table + bert_convert.head_entries(head, dense_then_out_proj=True)
  head = _HEAD[tower]
  if tower == "discriminator":
    table += bert_convert.linear_entries("discriminator_head/dense", f"{head}dense")
    table += bert_convert.linear_entries("discriminator_head/prediction", f"{head}dense_prediction")
  else:
    table += bert_convert.linear_entries("generator_head/transform", f"{head}dense")
    table += bert_convert.norm_entries("generator_head/layer_norm", f"{head}LayerNorm")
    table.append(("generator_head/bias", "generator_lm_head.bias", "copy"))
  return table


def _towers(cfg: electra.ElectraConfig) -> dict:
  return {"discriminator": electra.discriminator_config(cfg), "generator": electra.generator_config(cfg)}


def _check_gelu(cfg: electra.ElectraConfig) -> None:
  if cfg.hidden_act != "gelu":
    raise UserError(f"HF ElectraForMaskedLM's head always applies gelu, and ours applies model.hidden_act="
                    f"'{cfg.hidden_act}'; a generator converts only with hidden_act gelu")


def _architecture(cfg: electra.ElectraConfig, tower: str) -> str:
  if tower == "generator":
    return "ElectraForMaskedLM"
  return {"pretraining": "ElectraForPreTraining", "classification": "ElectraForSequenceClassification",
          "span": "ElectraForQuestionAnswering"}[cfg.head]


def _hf_config(cfg: electra.ElectraConfig, tower: str) -> dict:
  t = _towers(cfg)[tower]
  task = bert_convert.task_config(cfg) if tower == "discriminator" else {}
  return task | {
      "model_type": "electra", "architectures": [_architecture(cfg, tower)],
      "vocab_size": cfg.vocab_size, "embedding_size": cfg.embed_dim, "hidden_size": t.hidden_size,
      "num_hidden_layers": t.num_layers, "num_attention_heads": t.num_heads, "intermediate_size": t.intermediate_size,
      "hidden_act": cfg.hidden_act, "hidden_dropout_prob": cfg.dropout,
      "attention_probs_dropout_prob": cfg.attention_dropout, "max_position_embeddings": cfg.max_position,
      "type_vocab_size": cfg.type_vocab_size, "initializer_range": cfg.initializer_range,
      "layer_norm_eps": cfg.layer_norm_eps, "pad_token_id": cfg.pad_token_id,
      "position_embedding_type": "absolute", "tie_word_embeddings": True,
      "classifier_dropout": cfg.classifier_dropout if cfg.classifier_dropout >= 0 else None,
  }


def _export(model_config: Any, params: dict, tower: str) -> tuple[dict, dict]:
  cfg = electra.make_config(model_config)
  flat = traverse_util.flatten_dict(electra.to_layout(params, cfg, scanned=False), sep="/")
  state_dict = {hf: np.asarray(bert_convert.to_hf_kernel(kind, np.asarray(flat[ours])), np.float32)
                for ours, hf, kind in _tower_table(tower, _towers(cfg)[tower], cfg.head)}
  return _hf_config(cfg, tower), state_dict


def to_hf(model_config: Any, params: dict) -> tuple[dict, dict]:
  """The discriminator as ElectraForPreTraining (a task model as ElectraFor{SequenceClassification,
  QuestionAnswering})."""
  return _export(model_config, params, "discriminator")


def to_hf_companions(model_config: Any, params: dict) -> dict:
  """{"generator": (hf_config, state_dict)}: the generator as ElectraForMaskedLM; {} for a task model."""
  cfg = electra.make_config(model_config)
  if cfg.head != "pretraining":
    return {}
  _check_gelu(cfg)
  return {"generator": _export(model_config, params, "generator")}


def _model_config(hf: dict, generator_hf: dict | None, task: dict) -> ml_collections.ConfigDict:
  bert_convert.check_encoder_config(hf)
  dropout = hf.get("hidden_dropout_prob", 0.1)
  embedding_size = hf.get("embedding_size", _HF_EMBEDDING_SIZE)
  sizes = {}
  if generator_hf is not None:
    sizes = dict(generator_size=generator_hf["hidden_size"] / hf["hidden_size"],
                 generator_layers=generator_hf["num_hidden_layers"] / hf["num_hidden_layers"])
  return models.default_config(
      "electra", vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
      num_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
      embedding_size=0 if embedding_size == hf["hidden_size"] else embedding_size,
      max_position=hf["max_position_embeddings"], type_vocab_size=hf.get("type_vocab_size", 2),
      pad_token_id=hf.get("pad_token_id") or 0, hidden_act=bert_convert.hf_activation(hf.get("hidden_act", "gelu")),
      dropout=dropout, attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
      layer_norm_eps=hf.get("layer_norm_eps", 1e-12), initializer_range=hf.get("initializer_range", 0.02),
      classifier_dropout=bert_convert.classifier_dropout(hf.get("classifier_dropout"), dropout),
      **task, **sizes)


def _check_generator_config(cfg: electra.ElectraConfig, generator_hf: dict) -> None:
  """The generator's HF config must be the one our settings derive from the discriminator's."""
  ours = _hf_config(cfg, "generator")
  keys = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
          "intermediate_size", "max_position_embeddings", "type_vocab_size")
  given = {k: generator_hf.get(k, _HF_EMBEDDING_SIZE if k == "embedding_size" else None) for k in keys}
  differ = [f"{k} {given[k]} != {ours[k]}" for k in keys if given[k] != ours[k]]
  if differ:
    raise UserError(f"the generator is not the discriminator scaled by one generator_size ({'; '.join(differ)}); "
                    "only generators sized as ELECTRA's (hidden size, heads and FFN by one fraction) convert")


def _read(state_dict: dict, table: list, cfg, what: str) -> dict:
  missing = [hf for _, hf, _ in table if hf not in state_dict]
  if missing:
    more = " ..." if len(missing) > 3 else ""
    wanted = ("ElectraForPreTraining, ElectraForSequenceClassification or ElectraForQuestionAnswering"
              if what == "discriminator" else "ElectraForMaskedLM")
    raise UserError(f"the {what} checkpoint lacks {', '.join(missing[:3])}{more}; convert an {wanted} checkpoint")
  unused = sorted(k for k in set(state_dict) - {hf for _, hf, _ in table} - {"generator_lm_head.weight"}
                  if not k.endswith(("position_ids", "token_type_ids")))
  if unused:
    raise UserError(f"the {what} checkpoint has parameters we have no place for: {', '.join(unused[:3])}")
  return {ours: bert_convert.to_ours(kind, np.asarray(state_dict[hf], np.float32), cfg) for ours, hf, kind in table}


def _fresh_generator(model_config: Any) -> dict:
  """A newly initialized generator (and its head), seed 0, for an import without one."""
  model = models.build_model(model_config)
  cfg = electra.make_config(model_config)
  init = jax.jit(lambda key: model.init({"params": key}, **electra.example_inputs(cfg))["params"])
  params = jax.tree_util.tree_map(np.asarray, traverse_util.flatten_dict(
      nn.meta.unbox(init(jax.random.key(0))), sep="/"))
  return {k: v for k, v in params.items() if k.startswith(("generator/", "generator_head/"))}


def from_hf(state_dict: dict, hf_config: dict, companions: dict | None = None) -> tuple[Any, dict]:
  task = bert_convert.task_head(state_dict, "classifier.out_proj.weight", f"{_HEAD['discriminator']}dense.weight")
  generator = None if task else (companions or {}).get("generator")  # the generator serves pretraining only
  generator_state, generator_hf = generator if generator else (None, None)
  model_config = _model_config(hf_config, generator_hf, task)
  cfg = electra.make_config(model_config)
  electra.validate(cfg)
  towers = _towers(cfg)
  flat = _read(state_dict, _tower_table("discriminator", towers["discriminator"], cfg.head), towers["discriminator"],
               "discriminator")
  if generator is None and not task:
    flat.update(_fresh_generator(model_config))
  elif generator is not None:
    assert generator_state is not None and generator_hf is not None  # unpacked from generator
    _check_gelu(cfg)
    _check_generator_config(cfg, generator_hf)
    generated = _read(generator_state, _tower_table("generator", towers["generator"]), towers["generator"], "generator")
    tied = {"generator_lm_head.weight": generated["embeddings/word_embeddings/embedding"]}
    for ours, value in generated.items():
      if ours.startswith("embeddings/") and not np.array_equal(value, flat[ours]):
        raise UserError(f"the generator's {ours} differs from the discriminator's; ELECTRA's generator shares "
                        "the discriminator's embeddings (untied generator embeddings are not supported)")
    for name, value in tied.items():
      if name in generator_state and not np.array_equal(generator_state[name], value):
        raise UserError(f"{name} differs from the word embeddings it should be tied to; untied MLM heads "
                        "are not supported")
    flat.update(generated)
  return model_config, traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})
