"""ERNIE 1.0: its exact size, and Hugging Face parity both ways (transformers' ErnieForPreTraining and
ErnieForMaskedLM, model type `ernie`, use_task_id false) on tiny random models with every parameter perturbed and
padded inputs; nothing is downloaded."""

import json

import flax
from flax import traverse_util
import jax
import numpy as np
import pytest
import torch
import transformers

from bert_jax import cli, config as config_lib, convert, models, params as params_lib
from bert_jax.convert import weights
from bert_jax.errors import UserError

TOLERANCE = 1e-4
SIZES = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             hidden_act="relu", max_position_embeddings=25, layer_norm_eps=1e-5, hidden_dropout_prob=0.0,
             attention_probs_dropout_prob=0.0)
CLASSES = {"pretraining": transformers.ErnieForPreTraining, "masked_lm": transformers.ErnieForMaskedLM}


def test_ernie_base_zh_counts_as_ernie_model(capsys):
  """`bert-jax params`' count of the bare encoder is ErnieModel's (transformers' own count, on the meta device)."""
  assert cli.main(["params", "--config", "ernie_base_zh", "--json"]) == 0
  counts = json.loads(capsys.readouterr().out)
  with torch.device("meta"):
    reference = transformers.ErnieModel(transformers.ErnieConfig(
        vocab_size=18000, max_position_embeddings=513, type_vocab_size=2, hidden_act="relu", use_task_id=False))
  assert counts["encoder"] == reference.num_parameters() == 99_866_112
  assert counts["total"] == 100_477_778  # plus the MLM head's transform, LayerNorm and bias, and NSP


def _random_model(name: str) -> torch.nn.Module:
  torch.manual_seed(0)
  model = CLASSES[name](transformers.ErnieConfig(**SIZES)).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return model


def _inputs(vocab_size: int) -> dict:
  rng = np.random.default_rng(0)
  mask = (np.arange(12)[None] < np.array([[12], [9], [5]])).astype(np.int64)
  ids = np.where(mask, rng.integers(3, vocab_size, (3, 12)), 0)
  return {"input_ids": ids, "token_type_ids": ((np.arange(12)[None] >= 4) * mask).astype(np.int64),
          "attention_mask": mask}


def _hf_outputs(model: torch.nn.Module, inputs: dict) -> dict:
  tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
  with torch.no_grad():
    base, heads = model.ernie(**tensors), model(**tensors)
  outputs = {"sequence_output": base.last_hidden_state,
             "mlm_logits": heads.logits if hasattr(heads, "logits") else heads.prediction_logits}
  if hasattr(heads, "seq_relationship_logits"):
    outputs |= {"pooled_output": base.pooler_output, "sentence_logits": heads.seq_relationship_logits}
  return {k: v.numpy() for k, v in outputs.items()}


def _our_outputs(model_config, params: dict, inputs: dict) -> dict:
  model = models.build_model(model_config)
  outputs = jax.jit(model.apply)({"params": params}, inputs["input_ids"], inputs["token_type_ids"],
                                 inputs["attention_mask"])
  return {k: np.asarray(v) for k, v in outputs.items() if v is not None}


def _max_differences(ours: dict, expected: dict) -> dict:
  assert set(expected) <= set(ours)
  return {k: float(np.max(np.abs(ours[k] - v))) for k, v in expected.items()}


@pytest.fixture(scope="module", params=list(CLASSES))
def case(request, tmp_path_factory):
  model = _random_model(request.param)
  hf_dir = tmp_path_factory.mktemp(request.param)
  model.save_pretrained(hf_dir)
  state_dict, hf_config = weights.read_hf_dir(hf_dir)
  model_config, params = convert.from_hf(state_dict, hf_config)
  inputs = _inputs(model.config.vocab_size)
  return dict(name=request.param, model=model, inputs=inputs, hf_outputs=_hf_outputs(model, inputs),
              state_dict=state_dict, model_config=model_config, params=params)


def test_import_matches_transformers(case):
  m = case["model_config"]
  assert (m.family, m.hidden_act, m.max_position, m.layer_norm_eps) == ("ernie", "relu", 25, 1e-5)
  assert (m.sentence_head, m.pooler) == (("nsp", True) if case["name"] == "pretraining" else ("none", False))
  assert params_lib.count(case["params"]) == case["model"].num_parameters()
  differences = _max_differences(_our_outputs(m, case["params"], case["inputs"]), case["hf_outputs"])
  print(f"import {case['name']}: max abs difference {differences}")
  assert max(differences.values()) <= TOLERANCE, differences


def test_export_is_ernie_and_loads_in_transformers_with_the_same_outputs(case, tmp_path):
  hf_config, state_dict = convert.to_hf(case["model_config"], case["params"])
  assert (hf_config["model_type"], hf_config["use_task_id"]) == ("ernie", False)
  assert hf_config["architectures"] == [CLASSES[case["name"]].__name__]
  assert state_dict.keys() == case["state_dict"].keys()
  for key, value in state_dict.items():
    np.testing.assert_array_equal(value, case["state_dict"][key], err_msg=key)
  weights.write_hf_dir(tmp_path, hf_config, state_dict)
  assert type(transformers.AutoConfig.from_pretrained(tmp_path)) is transformers.ErnieConfig
  reloaded, info = CLASSES[case["name"]].from_pretrained(tmp_path, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
  differences = _max_differences(_hf_outputs(reloaded.eval(), case["inputs"]), case["hf_outputs"])
  print(f"export {case['name']}: max abs difference {differences}")
  assert max(differences.values()) <= TOLERANCE, differences


def test_import_of_export_is_identity(case):
  model_config, params = convert.from_hf(*reversed(convert.to_hf(case["model_config"], case["params"])))
  assert model_config.to_dict() == case["model_config"].to_dict()
  ours, back = traverse_util.flatten_dict(case["params"]), traverse_util.flatten_dict(params)
  assert ours.keys() == back.keys() and all(np.array_equal(ours[k], back[k]) for k in ours)


def test_a_fresh_ernie_exports_as_ernie_for_pretraining():
  config = config_lib.load_config("ernie_tiny")
  inputs = models.family(config.model).example_inputs(models.make_config(config.model))
  params = flax.linen.meta.unbox(models.build_model(config.model).init(jax.random.key(0), **inputs)["params"])
  hf_config, state_dict = convert.to_hf(config.model, params)
  assert (hf_config["model_type"], hf_config["architectures"], hf_config["hidden_act"]) == (
      "ernie", ["ErnieForPreTraining"], "relu")
  assert all(key.startswith(("ernie.", "cls.")) for key in state_dict)


def test_unsupported_ernie_checkpoints_are_one_line():
  model = _random_model("masked_lm")
  state_dict = {k: v.numpy() for k, v in model.state_dict().items()}
  with pytest.raises(UserError, match=r"^this ERNIE checkpoint has task-type embeddings \(use_task_id"):
    convert.from_hf(state_dict, {**model.config.to_dict(), "use_task_id": True})
  del state_dict["ernie.embeddings.word_embeddings.weight"]
  with pytest.raises(UserError, match=r"^the ernie checkpoint lacks ernie\.embeddings\.word_embeddings\.weight"):
    convert.from_hf(state_dict, model.config.to_dict())
  with pytest.raises(UserError, match="^an ERNIE model has neither ALBERT's sharing"):
    config_lib.load_config("ernie_tiny", ["model.share=all"])
