"""DistilBERT: the published parameter counts, Hugging Face parity both ways (a tiny random DistilBertForMaskedLM and
classifier; nothing is downloaded), and the student's start from every other layer of a BERT teacher."""

from flax import traverse_util
import jax
import numpy as np
import pytest
import torch
import transformers

from bert_jax import config as config_lib, convert, models, params as params_lib
from bert_jax.errors import UserError
from bert_jax.models import distilbert

TOLERANCE = 1e-4
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
TINY = dict(vocab_size=97, dim=32, n_layers=3, n_heads=4, hidden_dim=37, max_position_embeddings=24, dropout=0.0,
            attention_dropout=0.0)


def test_counts_are_distilbert_base_uncased():
  counts = params_lib.count_model(config_lib.load_config("distilbert_base").model)
  assert (counts["total"], counts["encoder"]) == (66_985_530, 66_362_880)  # DistilBertForMaskedLM, DistilBertModel


def _random(model_cls, **extra) -> torch.nn.Module:
  torch.manual_seed(0)
  model = model_cls(transformers.DistilBertConfig(**TINY, **extra)).eval()
  with torch.no_grad():
    for p in model.parameters():  # LayerNorms away from 1 and 0
      p.add_(0.1 * torch.randn_like(p))
  return model


def _inputs() -> dict:
  rng = np.random.default_rng(0)
  mask = (np.arange(12)[None] < np.array([[12], [9], [5]])).astype(np.int64)
  return {"input_ids": np.where(mask, rng.integers(3, 97, (3, 12)), 0), "attention_mask": mask}


def _ours(model_config, params: dict, inputs: dict) -> dict:
  model = models.build_model(model_config)
  types = np.zeros_like(inputs["input_ids"])
  args = ({"params": params}, inputs["input_ids"], types, inputs["attention_mask"])
  return jax.jit(model.apply).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)


def _close(ours, theirs, mask) -> float:
  """The largest difference at real tokens (padding positions differ by convention)."""
  return float(np.max(np.abs((np.asarray(ours) - np.asarray(theirs)) * mask[..., None])))


def test_masked_lm_parity_both_ways():
  model, inputs = _random(transformers.DistilBertForMaskedLM), _inputs()
  state_dict = {k: v.numpy() for k, v in model.state_dict().items()}
  model_config, params = convert.from_hf(state_dict, model.config.to_dict())
  with torch.no_grad():
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    hidden = model.distilbert(**tensors).last_hidden_state.numpy()
    logits = model(**tensors).logits.numpy()
  outputs = _ours(model_config, params, inputs)
  mask = inputs["attention_mask"]
  assert _close(outputs["sequence_output"], hidden, mask) <= TOLERANCE
  assert _close(outputs["mlm_logits"], logits, mask) <= TOLERANCE

  hf_config, exported = convert.to_hf(model_config, params)
  assert hf_config["architectures"] == ["DistilBertForMaskedLM"] and set(exported) | {"vocab_projector.weight"} == \
      set(state_dict)
  back = transformers.DistilBertForMaskedLM(transformers.DistilBertConfig(**hf_config)).eval()
  missing, unexpected = back.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=False)
  assert list(missing) == ["vocab_projector.weight"] and not unexpected  # tied to the word embeddings
  back.tie_weights()
  with torch.no_grad():
    assert _close(back(**tensors).logits.numpy(), outputs["mlm_logits"], mask) <= TOLERANCE


def test_scanned_layout_exports_the_same():
  model = _random(transformers.DistilBertForMaskedLM)
  model_config, params = convert.from_hf({k: v.numpy() for k, v in model.state_dict().items()},
                                         model.config.to_dict())
  scanned = distilbert.to_layout(params, distilbert.make_config(model_config), scanned=True)
  model_config.scan_layers = True
  _, exported = convert.to_hf(model_config, scanned)
  model_config.scan_layers = False
  _, unscanned = convert.to_hf(model_config, params)
  assert all(np.array_equal(exported[k], unscanned[k]) for k in unscanned)


def test_classifier_parity():
  model, inputs = _random(transformers.DistilBertForSequenceClassification, num_labels=3), _inputs()
  model_config, params = convert.from_hf({k: v.numpy() for k, v in model.state_dict().items()},
                                         model.config.to_dict())
  assert (model_config.head, model_config.num_labels) == ("classification", 3)
  with torch.no_grad():
    logits = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()
  assert np.max(np.abs(np.asarray(_ours(model_config, params, inputs)["logits"]) - logits)) <= TOLERANCE
  hf_config, _ = convert.to_hf(model_config, params)
  assert hf_config["architectures"] == ["DistilBertForSequenceClassification"]


def test_teacher_layers_are_the_releases_and_spread_evenly():
  assert distilbert.teacher_layers(12, 6) == [0, 2, 4, 7, 9, 11]
  assert distilbert.teacher_layers(4, 2) == [0, 3]
  assert distilbert.teacher_layers(2, 1) == [0]
  with pytest.raises(UserError, match="at most 2"):
    distilbert.teacher_layers(2, 3)


@pytest.mark.parametrize("name, offset", [("bert_tiny", 0), ("roberta_tiny", 2)])  # RoBERTa's start past padding
def test_a_student_as_deep_as_its_teacher_starts_as_the_teacher(name, offset):
  """Every layer taken, token type 0 folded into the positions: the student computes the teacher's MLM logits."""
  teacher_config = config_lib.load_config(name, ["model.vocab_size=97"]).model
  teacher = params_lib.abstract(teacher_config)
  rng = np.random.default_rng(1)
  flat = traverse_util.flatten_dict(teacher, sep="/")
  teacher = traverse_util.unflatten_dict({k: rng.normal(0, 0.2, v.shape).astype(np.float32) for k, v in flat.items()},
                                         sep="/")
  student_config = config_lib.load_config("distilbert_tiny", [
      "model.vocab_size=97", "model.hidden_size=64", "model.num_layers=2", "model.intermediate_size=256"]).model
  student = distilbert.from_bert(teacher, distilbert.make_config(student_config), offset)
  convert.check_params(student_config, student)
  inputs = _inputs()
  ours = _ours(student_config, student, inputs)
  theirs = _ours(teacher_config, teacher, inputs)
  assert _close(ours["mlm_logits"], theirs["mlm_logits"], inputs["attention_mask"]) <= TOLERANCE
