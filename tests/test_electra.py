"""ELECTRA against Hugging Face: discriminator logits (ElectraForPreTraining) and generator logits
(ElectraForMaskedLM) on the same random weights, both conversion directions, the `convert` command, and the
published sizes' parameter counts from our configs.

Reference models are transformers PyTorch models built from tiny configs with random weights (every parameter
perturbed; the generator's embeddings set to the discriminator's, as ELECTRA shares them); nothing is
downloaded. Inputs carry padding at the end of some rows.
"""

from flax import traverse_util
import jax
import numpy as np
import pytest
import torch
import transformers

from bert_jax import cli, config as config_lib, convert, models, params as params_lib
from bert_jax.convert import weights
from bert_jax.errors import UserError
from bert_jax.models import electra

TOLERANCE = 1e-4
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
BASE = dict(vocab_size=97, num_hidden_layers=2, max_position_embeddings=24, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)
# name: (discriminator sizes, generator sizes); the generator is the discriminator x 1/2 in hidden, heads, FFN.
CASES = {
    "small_like": (dict(embedding_size=16, hidden_size=32, num_attention_heads=4, intermediate_size=40),
                   dict(embedding_size=16, hidden_size=16, num_attention_heads=2, intermediate_size=20)),
    "base_like": (dict(embedding_size=32, hidden_size=32, num_attention_heads=4, intermediate_size=40),
                  dict(embedding_size=32, hidden_size=16, num_attention_heads=2, intermediate_size=20)),
}


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return model.eval()


def _random_pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
  disc_sizes, gen_sizes = CASES[name]
  torch.manual_seed(0)
  discriminator = _perturbed(transformers.ElectraForPreTraining(transformers.ElectraConfig(**BASE, **disc_sizes)))
  generator = _perturbed(transformers.ElectraForMaskedLM(transformers.ElectraConfig(**BASE, **gen_sizes)))
  generator.electra.embeddings.load_state_dict(discriminator.electra.embeddings.state_dict())  # shared
  generator.tie_weights()
  return discriminator, generator


def _inputs(seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  batch, length = 3, 12
  mask = (np.arange(length)[None] < np.array([[12], [9], [5]])).astype(np.int64)
  ids = np.where(mask, rng.integers(3, BASE["vocab_size"], (batch, length)), 0)
  types = ((np.arange(length)[None] >= 4) * mask).astype(np.int64)
  return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def _hf_logits(model: torch.nn.Module, inputs: dict) -> np.ndarray:
  with torch.no_grad():
    return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()


def _our_logits(model_config, params: dict, inputs: dict) -> dict:
  model = models.build_model(model_config)
  args = ({"params": params}, inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"])
  outputs = jax.jit(model.apply).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)
  return {k: np.asarray(v) for k, v in outputs.items()}


def _state(model: torch.nn.Module) -> dict:
  return {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
  discriminator, generator = _random_pair(request.param)
  inputs = _inputs()
  model_config, params = convert.from_hf(_state(discriminator), discriminator.config.to_dict(),
                                         {"generator": (_state(generator), generator.config.to_dict())})
  return dict(name=request.param, discriminator=discriminator, generator=generator, inputs=inputs,
              model_config=model_config, params=params, ours=_our_logits(model_config, params, inputs))


def test_import_matches_hf_logits(case):
  ours, inputs = case["ours"], case["inputs"]
  np.testing.assert_allclose(ours["disc_logits"], _hf_logits(case["discriminator"], inputs), atol=TOLERANCE, rtol=0)
  np.testing.assert_allclose(ours["mlm_logits"], _hf_logits(case["generator"], inputs), atol=TOLERANCE, rtol=0)
  m = case["model_config"]
  assert (m.generator_size, m.embedding_size) == (0.5, 16 if case["name"] == "small_like" else 0)
  shared = sum(p.numel() for p in case["discriminator"].electra.embeddings.parameters())
  assert params_lib.count(case["params"]) == (case["discriminator"].num_parameters()
                                              + case["generator"].num_parameters() - shared)


def test_export_loads_in_transformers_with_the_same_logits(case, tmp_path):
  hf_config, state_dict = convert.to_hf(case["model_config"], case["params"])
  (generator_name, (generator_config, generator_state)), = convert.to_hf_companions(
      case["model_config"], case["params"]).items()
  assert generator_name == "generator"
  for ours, theirs in ((state_dict, case["discriminator"]), (generator_state, case["generator"])):
    expected = {k: v for k, v in _state(theirs).items() if k != "generator_lm_head.weight"}  # tied, left out
    assert ours.keys() == expected.keys()
    for key in expected:
      np.testing.assert_array_equal(ours[key], expected[key], err_msg=key)
  weights.write_hf_dir(tmp_path / "d", hf_config, state_dict)
  weights.write_hf_dir(tmp_path / "g", generator_config, generator_state)
  for directory, model_cls, reference in ((tmp_path / "d", transformers.ElectraForPreTraining, case["discriminator"]),
                                          (tmp_path / "g", transformers.ElectraForMaskedLM, case["generator"])):
    reloaded, info = model_cls.from_pretrained(directory, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    np.testing.assert_allclose(_hf_logits(reloaded.eval(), case["inputs"]), _hf_logits(reference, case["inputs"]),
                               atol=TOLERANCE, rtol=0)


def test_import_of_export_is_identity_and_scanned_exports_the_same(case):
  hf_config, state_dict = convert.to_hf(case["model_config"], case["params"])
  companions = {k: (s, c) for k, (c, s) in convert.to_hf_companions(case["model_config"], case["params"]).items()}
  model_config, params = convert.from_hf(state_dict, hf_config, companions)
  assert model_config.to_dict() == case["model_config"].to_dict()
  flat, expected = traverse_util.flatten_dict(params), traverse_util.flatten_dict(case["params"])
  assert flat.keys() == expected.keys()
  for key in flat:
    np.testing.assert_array_equal(flat[key], expected[key], err_msg=str(key))
  scanned_config = model_config.copy_and_resolve_references()
  scanned_config.scan_layers = True
  scanned = electra.to_layout(params, electra.make_config(scanned_config), scanned=True)
  assert "layers" in scanned["generator"] and "layers" in scanned["discriminator"]
  assert _our_logits(scanned_config, scanned, case["inputs"])["disc_logits"] == pytest.approx(
      case["ours"]["disc_logits"], abs=1e-5)
  _, got = convert.to_hf(scanned_config, scanned)
  for key in state_dict:
    np.testing.assert_array_equal(got[key], state_dict[key], err_msg=key)


def test_discriminator_alone_imports_with_a_fresh_generator():
  discriminator, _ = _random_pair("small_like")
  model_config, params = convert.from_hf(_state(discriminator), discriminator.config.to_dict())
  assert model_config.generator_size == 0.25  # the family's default
  ours = _our_logits(model_config, params, _inputs())
  np.testing.assert_allclose(ours["disc_logits"], _hf_logits(discriminator, _inputs()), atol=TOLERANCE, rtol=0)
  assert np.isfinite(ours["mlm_logits"]).all()


def test_mismatched_generators_are_user_errors():
  discriminator, generator = _random_pair("small_like")
  disc, gen = (_state(discriminator), discriminator.config.to_dict()), (_state(generator), generator.config.to_dict())
  with pytest.raises(UserError, match="scaled by one generator_size"):
    convert.from_hf(*disc, {"generator": (gen[0], {**gen[1], "intermediate_size": 24})})
  word_embeddings = "electra.embeddings.word_embeddings.weight"
  other = {**gen[0], word_embeddings: gen[0][word_embeddings] + 1}
  with pytest.raises(UserError, match="shares"):
    convert.from_hf(*disc, {"generator": (other, gen[1])})
  with pytest.raises(UserError, match="lacks discriminator_predictions"):
    convert.from_hf({k: v for k, v in disc[0].items() if not k.startswith("discriminator_")}, disc[1])


def test_convert_command_writes_the_discriminator_and_the_generator(tmp_path):
  discriminator, generator = _random_pair("small_like")
  discriminator.save_pretrained(tmp_path / "hf")
  generator.save_pretrained(tmp_path / "hf" / "generator")
  assert cli.main(["convert", "--from-hf", str(tmp_path / "hf"), "--output", str(tmp_path / "ours")]) == 0
  config = config_lib.load_config(str(tmp_path / "ours" / "config.py"))
  assert (config.model.family, config.model.generator_size, config.objective.name) == (
      "electra", 0.5, "replaced_token_detection")
  assert cli.main(["convert", "--to-hf", "--config", str(tmp_path / "ours" / "config.py"),
                   "--params", str(tmp_path / "ours" / "params"), "--output", str(tmp_path / "back")]) == 0
  for directory, reference in ((tmp_path / "back", discriminator), (tmp_path / "back" / "generator", generator)):
    exported, _ = weights.read_hf_dir(directory)
    expected = {k: v for k, v in _state(reference).items() if k != "generator_lm_head.weight"}
    assert exported.keys() == expected.keys()
    for key in expected:
      np.testing.assert_array_equal(exported[key], expected[key], err_msg=key)


# HF's counts for the same configurations (ElectraForPreTraining, ElectraModel, ElectraForMaskedLM at the
# paper's generator sizes); ours: the joint model counts the shared embeddings once.
PUBLISHED = {"electra_small": (13_549_057, 13_483_008, 4_620_026),
             "electra_base": (109_483_009, 108_891_648, 33_740_602),
             "electra_large": (335_142_913, 334_092_288, 51_295_290)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts(name):
  pretraining, encoder, generator = PUBLISHED[name]
  config = config_lib.load_config(name, ["model.scan_layers=True"])  # the same shapes, traced once a tower
  counts = params_lib.count_model(config.model)
  tree = params_lib.abstract(config.model)
  assert tree["discriminator"]["layers"]["ffn"]["intermediate"]["kernel"].shape[0] == config.model.num_layers
  embeddings = params_lib.count(tree["embeddings"])
  assert counts["encoder"] == encoder
  assert pretraining == (counts["encoder"] + params_lib.count(tree["discriminator_head"]))
  assert generator == (embeddings + params_lib.count(tree["generator"]) + params_lib.count(tree["generator_head"]))
  assert counts["total"] == pretraining + generator - embeddings
