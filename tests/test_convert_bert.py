"""Hugging Face parity for BERT, RoBERTa and ALBERT: import, export, round trips and `bert-jax convert`.

Reference models are transformers PyTorch models built from tiny configs with random weights (every
parameter perturbed, so LayerNorm scales and biases are not at their initial 1 and 0); nothing is
downloaded. Inputs carry padding at the end of some rows.
"""


from cli_helpers import snapshot
from flax import traverse_util
import jax
import numpy as np
import pytest
from safetensors.torch import save_file as save_torch_file
import torch
import transformers

from bert_jax import cli, config as config_lib, convert, models, params as params_lib
from bert_jax.convert import weights
from bert_jax.errors import UserError
from bert_jax.models import bert

SIZES = dict(vocab_size=97, hidden_size=32, num_attention_heads=4, intermediate_size=37,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
CASES = {
    "bert": (transformers.BertForPreTraining, transformers.BertConfig(
        **SIZES, num_hidden_layers=2, max_position_embeddings=24)),
    "roberta": (transformers.RobertaForMaskedLM, transformers.RobertaConfig(
        **SIZES, num_hidden_layers=2, max_position_embeddings=26, type_vocab_size=1, pad_token_id=1,
        layer_norm_eps=1e-5)),
    "albert": (transformers.AlbertForPreTraining, transformers.AlbertConfig(
        **SIZES, num_hidden_layers=3, embedding_size=16, max_position_embeddings=24)),
    "albert_groups": (transformers.AlbertForPreTraining, transformers.AlbertConfig(
        **SIZES, num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2, embedding_size=16,
        max_position_embeddings=24)),
}
TOLERANCE = 1e-4
# Tiny graphs: XLA's expensive CPU passes would cost more than running them.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _random_model(name: str) -> torch.nn.Module:
  model_cls, config = CASES[name]
  torch.manual_seed(0)
  model = model_cls(config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return model


def _inputs(config, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  batch, length = 3, 12
  mask = (np.arange(length)[None] < np.array([[12], [9], [5]])).astype(np.int64)
  ids = np.where(mask, rng.integers(3, config.vocab_size, (batch, length)), config.pad_token_id)
  types = (np.arange(length)[None] >= 4) * mask if config.type_vocab_size > 1 else np.zeros_like(ids)
  return {"input_ids": ids, "token_type_ids": types.astype(np.int64), "attention_mask": mask}


def _hf_outputs(model: torch.nn.Module, inputs: dict) -> dict:
  tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
  with torch.no_grad():
    base = getattr(model, model.base_model_prefix)(**tensors)
    heads = model(**tensors)
  outputs = {"sequence_output": base.last_hidden_state,
             "mlm_logits": heads.logits if hasattr(heads, "logits") else heads.prediction_logits}
  if base.pooler_output is not None:
    outputs["pooled_output"] = base.pooler_output
  for field in ("seq_relationship_logits", "sop_logits"):
    if hasattr(heads, field):
      outputs["sentence_logits"] = getattr(heads, field)
  return {k: v.numpy() for k, v in outputs.items()}


def _our_outputs(model_config, params: dict, inputs: dict) -> dict:
  model = models.build_model(model_config)
  args = ({"params": params}, inputs["input_ids"], inputs["token_type_ids"], inputs["attention_mask"])
  outputs = jax.jit(model.apply).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)
  return {k: np.asarray(v) for k, v in outputs.items() if v is not None}


def _assert_trees_equal(a: dict, b: dict) -> None:
  flat_a, flat_b = traverse_util.flatten_dict(a), traverse_util.flatten_dict(b)
  assert flat_a.keys() == flat_b.keys()
  for key in flat_a:
    np.testing.assert_array_equal(flat_a[key], flat_b[key], err_msg=str(key))


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
  """The HF model saved to a directory, its outputs, and the import of that directory."""
  name = request.param
  model = _random_model(name)
  hf_dir = tmp_path_factory.mktemp(name)
  model.save_pretrained(hf_dir)
  inputs = _inputs(model.config)
  state_dict, hf_config = weights.read_hf_dir(hf_dir)
  model_config, params = convert.from_hf(state_dict, hf_config)
  return dict(name=name, model=model, hf_dir=hf_dir, inputs=inputs, hf_outputs=_hf_outputs(model, inputs),
              state_dict=state_dict, model_config=model_config, params=params)


def test_import_matches_hf_outputs(case):
  ours = _our_outputs(case["model_config"], case["params"], case["inputs"])
  expected = case["hf_outputs"]
  want = {"sequence_output", "mlm_logits"}
  if case["name"] != "roberta":
    want |= {"pooled_output", "sentence_logits"}
  assert set(expected) == want and want <= set(ours)
  for key, value in expected.items():
    assert ours[key].shape == value.shape, key
    np.testing.assert_allclose(ours[key], value, atol=TOLERANCE, rtol=0, err_msg=key)


def test_import_maps_config(case):
  m, hf = case["model_config"], case["model"].config
  assert params_lib.count(case["params"]) == case["model"].num_parameters()  # tied decoder counted once
  assert (m.hidden_size, m.num_layers, m.num_heads, m.max_position) == (
      hf.hidden_size, hf.num_hidden_layers, hf.num_attention_heads, hf.max_position_embeddings)
  if case["name"].startswith("albert"):
    assert (m.share, m.embedding_size, m.num_hidden_groups, m.inner_group_num, m.hidden_act) == (
        "all", hf.embedding_size, hf.num_hidden_groups, hf.inner_group_num, "gelu_new")
  if case["name"] == "roberta":
    assert (m.position_offset, m.pad_token_id, m.sentence_head, m.pooler) == (True, 1, "none", False)


def test_export_loads_in_transformers_with_the_same_outputs(case, tmp_path):
  hf_config, state_dict = convert.to_hf(case["model_config"], case["params"])
  assert state_dict.keys() == case["state_dict"].keys()  # exactly what save_pretrained writes
  for key, value in state_dict.items():
    np.testing.assert_array_equal(value, case["state_dict"][key], err_msg=key)
  weights.write_hf_dir(tmp_path, hf_config, state_dict)
  model_cls = CASES[case["name"]][0]
  reloaded, info = model_cls.from_pretrained(tmp_path, output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
  reloaded_outputs = _hf_outputs(reloaded.eval(), case["inputs"])
  for key, value in case["hf_outputs"].items():
    np.testing.assert_allclose(reloaded_outputs[key], value, atol=TOLERANCE, rtol=0, err_msg=key)


def test_import_of_export_is_identity(case):
  hf_config, state_dict = convert.to_hf(case["model_config"], case["params"])
  model_config, params = convert.from_hf(state_dict, hf_config)
  assert model_config.to_dict() == case["model_config"].to_dict()
  _assert_trees_equal(params, case["params"])


@pytest.mark.parametrize("name", ["bert", "albert"])
def test_export_of_scanned_layout_equals_unscanned(name):
  model = _random_model(name)
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  model_config, params = convert.from_hf(state, model.config.to_dict())
  scanned_config = model_config.copy_and_resolve_references()
  scanned_config.scan_layers = True
  scanned = bert.to_layout(params, bert.make_config(scanned_config), scanned=True)
  assert "layers" in scanned["encoder"] or "layers_0" in scanned["encoder"]
  _, expected = convert.to_hf(model_config, params)
  _, got = convert.to_hf(scanned_config, scanned)
  assert got.keys() == expected.keys()
  for key in expected:
    np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_convert_command_round_trip(tmp_path, capsys):
  model = _random_model("bert")
  model.save_pretrained(tmp_path / "hf")
  assert cli.main(["convert", "--from-hf", str(tmp_path / "hf"), "--output", str(tmp_path / "ours")]) == 0
  config = config_lib.load_config(str(tmp_path / "ours" / "config.py"))
  state_dict, hf_config = weights.read_hf_dir(tmp_path / "hf")
  model_config, params = convert.from_hf(state_dict, hf_config)
  assert config.model.to_dict() == model_config.to_dict()
  assert config.data.seq_len == 24  # shortened to the imported position table
  _assert_trees_equal(weights.restore_params(tmp_path / "ours" / "params"), params)
  assert cli.main(["convert", "--to-hf", "--config", str(tmp_path / "ours" / "config.py"),
                   "--params", str(tmp_path / "ours" / "params"), "--output", str(tmp_path / "back")]) == 0
  exported, _ = weights.read_hf_dir(tmp_path / "back")
  assert exported.keys() == state_dict.keys()
  for key in state_dict:
    np.testing.assert_array_equal(exported[key], state_dict[key], err_msg=key)


def _error_line(capsys, argv: list[str]) -> str:
  capsys.readouterr()
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("bert-jax: error:") and "\n" not in err and "Traceback" not in err
  return err


def test_convert_command_errors(tmp_path, capsys):
  assert "config.json" in _error_line(capsys, ["convert", "--from-hf", str(tmp_path / "missing"),
                                               "--output", str(tmp_path / "out")])
  model = _random_model("bert")
  model.save_pretrained(tmp_path / "hf")
  argv = ["convert", "--from-hf", str(tmp_path / "hf"), "--output", str(tmp_path / "out")]
  assert cli.main(argv) == 0
  assert "already" in _error_line(capsys, argv)
  assert "--params" in _error_line(capsys, ["convert", "--to-hf", "--config", "bert_tiny", "--output", "x"])
  export = ["convert", "--to-hf", "--config", "bert_tiny", "--params", str(tmp_path / "out" / "params"),
            "--output", str(tmp_path / "x")]
  assert "do not match" in _error_line(capsys, export)
  (tmp_path / "occupied").write_text("a file")
  before = snapshot(tmp_path)
  for command in (argv[:3], export[:6]):
    assert _error_line(capsys, [*command, "--output", str(tmp_path / "occupied")]) == (
        f"bert-jax: error: --output {tmp_path / 'occupied'} is a file; give a directory to write into (a new one, or "
        "one without a converted model)")
  assert snapshot(tmp_path) == before


def test_unsupported_checkpoints_are_user_errors():
  model = _random_model("bert")
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  hf_config = model.config.to_dict()
  with pytest.raises(UserError, match="model_type"):
    convert.from_hf(state, {**hf_config, "model_type": "bloom"})
  with pytest.raises(UserError, match="lacks cls.predictions"):
    convert.from_hf({k: v for k, v in state.items() if not k.startswith("cls.predictions")}, hf_config)
  with pytest.raises(UserError, match="no place for"):
    convert.from_hf({**state, "classifier.weight": np.zeros((2, 32), np.float32)}, hf_config)
  with pytest.raises(UserError, match="tied"):
    convert.from_hf({**state, "cls.predictions.decoder.weight": np.zeros((97, 32), np.float32)}, hf_config)
  model_config, params = convert.from_hf(state, hf_config)
  model_config.update(share="attention", num_hidden_groups=2)  # same parameter names, no HF counterpart
  with pytest.raises(UserError, match="share=attention"):
    convert.to_hf(model_config, jax.tree_util.tree_map(np.asarray, params))


def test_read_hf_dir_reads_bfloat16_torch_files_and_legacy_names(tmp_path):
  state = {"bert.embeddings.LayerNorm.gamma": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
           "bert.embeddings.position_ids": torch.arange(3)}
  (tmp_path / "st").mkdir()
  (tmp_path / "st" / "config.json").write_text('{"model_type": "bert"}')
  save_torch_file(state, tmp_path / "st" / "model.safetensors")
  (tmp_path / "bin").mkdir()
  (tmp_path / "bin" / "config.json").write_text('{"model_type": "bert"}')
  torch.save(state, tmp_path / "bin" / "pytorch_model.bin")
  for directory in ("st", "bin"):
    read, hf_config = weights.read_hf_dir(tmp_path / directory)
    assert hf_config == {"model_type": "bert"}
    assert read.keys() == {"bert.embeddings.LayerNorm.weight", "bert.embeddings.position_ids"}
    weight = read["bert.embeddings.LayerNorm.weight"]
    assert weight.dtype == np.float32 and weight.tolist() == [1.5, -2.0]
    assert read["bert.embeddings.position_ids"].tolist() == [0, 1, 2]
