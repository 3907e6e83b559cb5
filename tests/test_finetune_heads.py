"""Fine-tuning heads (model.head classification and span) against Hugging Face's task classes, both conversion
directions, and the task model's parameter tree against the pretraining model's.

Reference models are transformers PyTorch models built from tiny configs with random weights (every parameter
perturbed); nothing is downloaded. Each case imports the HF model (from_hf), compares our logits with HF's on a
batch with padding, then exports (to_hf) and loads the export strictly into the HF class built from the exported
config. XLNet: HF reads the summary at position -1, so it gets the batch left-padded; ours gets it right-padded
(and left-padded: the real rows must agree). BART: each row ends with </s>, where BartForSequenceClassification
reads. BART and GPT-2 have no token types: HF gets none.
"""

import functools
import json

from flax import traverse_util
import jax
import numpy as np
import pytest
import torch
import transformers

from bert_jax import cli, config as config_lib, convert, models, params as params_lib
from bert_jax.errors import UserError

TOLERANCE = 1e-4
B, L = 3, 12
LENGTHS = np.array([12, 9, 5])
SIZES = dict(vocab_size=97, hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2,
             max_position_embeddings=24)
HF_CONFIGS = {
    "bert": lambda **kw: transformers.BertConfig(**SIZES, **kw),
    "roberta": lambda **kw: transformers.RobertaConfig(**(SIZES | dict(max_position_embeddings=26)), type_vocab_size=1,
                                                       pad_token_id=1, layer_norm_eps=1e-5, **kw),
    "albert": lambda **kw: transformers.AlbertConfig(**SIZES, embedding_size=16, **kw),
    "electra": lambda **kw: transformers.ElectraConfig(**SIZES, embedding_size=16, **kw),
    "xlnet": lambda **kw: transformers.XLNetConfig(vocab_size=97, d_model=32, n_layer=2, n_head=4, d_inner=37,
                                                   ff_activation="gelu", **kw),  # HF's mem_len 512: unused here
    "bart": lambda **kw: transformers.BartConfig(vocab_size=97, d_model=32, encoder_layers=2, decoder_layers=2,
                                                 encoder_attention_heads=4, decoder_attention_heads=4,
                                                 encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=24,
                                                 dropout=0.2, **kw),
    "gpt2": lambda **kw: transformers.GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=4, n_inner=37,
                                                 n_positions=24, pad_token_id=1, **kw),
}
HEAD_CLASSES = {
    "bert": ("BertForSequenceClassification", "BertForQuestionAnswering"),
    "roberta": ("RobertaForSequenceClassification", "RobertaForQuestionAnswering"),
    "albert": ("AlbertForSequenceClassification", "AlbertForQuestionAnswering"),
    "electra": ("ElectraForSequenceClassification", "ElectraForQuestionAnswering"),
    "xlnet": ("XLNetForSequenceClassification", "XLNetForQuestionAnsweringSimple"),
    "bart": ("BartForSequenceClassification", "BartForQuestionAnswering"),
    "gpt2": ("GPT2ForSequenceClassification", "GPT2ForQuestionAnswering"),
}
# The config key of each family's classifier dropout (GPT-2's classifier has none).
CLASSIFIER_DROPOUT = {"albert": "classifier_dropout_prob", "xlnet": "summary_last_dropout", "gpt2": None}
# What a strict load of an export may miss: the tied copies transformers fills from the one table.
TIED_COPIES = {"bart": {"model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"}}
CASES = [(t, head, n) for t in HF_CONFIGS for head, n in (("classification", 3), ("classification", 1), ("span", 2))]


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
  torch.manual_seed(1)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return model.eval()


def _hf_model(model_type: str, head: str, num_labels: int) -> torch.nn.Module:
  dropout = CLASSIFIER_DROPOUT.get(model_type, "classifier_dropout")
  settings = {"num_labels": num_labels} | ({dropout: 0.3} if dropout else {}) if head == "classification" else {}
  config = HF_CONFIGS[model_type](**settings)
  cls = getattr(transformers, HEAD_CLASSES[model_type][head == "span"])
  torch.manual_seed(0)
  return _perturbed(cls(config))


def _inputs(config, left_padded: bool = False) -> dict:
  rng = np.random.default_rng(0)
  mask = (np.arange(L)[None] < LENGTHS[:, None]).astype(np.int64)
  pad = config.pad_token_id or 0
  ids = np.where(mask, rng.integers(3, config.vocab_size, (B, L)), pad)
  types = (np.arange(L)[None] >= 4) * mask if getattr(config, "type_vocab_size", 2) > 1 else np.zeros_like(ids)
  inputs = {"input_ids": ids, "token_type_ids": types.astype(np.int64), "attention_mask": mask}
  if config.model_type == "bart":
    ids[np.arange(B), LENGTHS - 1] = config.eos_token_id
  if config.model_type in ("bart", "gpt2"):  # no token types (GPT-2's would add their token embeddings)
    del inputs["token_type_ids"]
  if left_padded:
    inputs = {k: np.stack([np.roll(row, L - n) for row, n in zip(v, LENGTHS)]) for k, v in inputs.items()}
  return inputs


def _hf_outputs(model: torch.nn.Module, inputs: dict) -> dict:
  with torch.no_grad():
    out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
  names = ("start_logits", "end_logits") if hasattr(out, "start_logits") else ("logits",)
  return {k: getattr(out, k).numpy() for k in names}


def _our_model(model_config, params: dict):
  """inputs -> our task model's outputs (one compiled function per model)."""
  model = models.build_model(model_config)
  names = {"input_ids": "input_ids_BL", "token_type_ids": "token_type_ids_BL", "attention_mask": "attention_mask_BL"}
  apply = jax.jit(lambda p, x: model.apply({"params": p}, **{names[k]: v for k, v in x.items()}))
  return lambda inputs: {k: np.asarray(v) for k, v in apply(params, inputs).items()}


def _real(outputs: dict, left_padded: bool) -> list:
  """Each row's outputs on its real tokens (per-token logits cut to them)."""
  rows = []
  for b, n in enumerate(LENGTHS):
    cut = slice(L - n, L) if left_padded else slice(0, n)
    rows.append({k: v[b, cut] if k != "logits" else v[b] for k, v in outputs.items()})
  return rows


def _assert_close(ours: dict, theirs: dict) -> None:
  assert ours.keys() == theirs.keys()
  for key in theirs:
    assert ours[key].dtype == np.float32 and ours[key].shape == theirs[key].shape, key
    np.testing.assert_allclose(ours[key], theirs[key], atol=TOLERANCE, rtol=0, err_msg=key)


@pytest.mark.parametrize("model_type,head,num_labels", CASES)
def test_task_model_matches_transformers_both_ways(model_type, head, num_labels):
  hf = _hf_model(model_type, head, num_labels)
  state = {k: v.numpy() for k, v in hf.state_dict().items()}
  model_config, params = convert.from_hf(state, hf.config.to_dict())
  assert (model_config.head, model_config.num_labels) == (head, num_labels if head == "classification" else 2)
  xlnet = model_type == "xlnet"
  inputs = _inputs(hf.config)
  hf_inputs = _inputs(hf.config, left_padded=xlnet)
  expected = _hf_outputs(hf, hf_inputs)
  run = _our_model(model_config, params)
  ours = run(inputs)
  if xlnet:  # the real tokens of each row: right-padded (ours) = left-padded (HF and ours)
    ours_left = run(_inputs(hf.config, left_padded=True))
    for mine, left, theirs in zip(_real(ours, False), _real(ours_left, True), _real(expected, True)):
      _assert_close(mine, theirs)
      _assert_close(left, theirs)
  else:
    _assert_close(ours, expected)

  hf_config, exported = convert.to_hf(model_config, params)
  assert convert.to_hf_companions(model_config, params) == {}  # no ELECTRA generator with a task model
  assert hf_config["architectures"] == [type(hf).__name__]
  config = transformers.AutoConfig.for_model(**json.loads(json.dumps(hf_config)))  # as config.json
  assert config.num_labels == (num_labels if head == "classification" else 2)
  assert config.problem_type == ("regression" if head == "classification" and num_labels == 1 else None)
  dropout = CLASSIFIER_DROPOUT.get(model_type, "classifier_dropout")
  if head == "classification" and dropout:
    assert model_config.classifier_dropout == 0.3
    assert getattr(config, dropout) == 0.3
  reloaded = type(hf)(config).eval()
  loaded = reloaded.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=False)
  assert not loaded.unexpected_keys and set(loaded.missing_keys) <= TIED_COPIES.get(model_type, set()), loaded
  hf_inputs = _inputs(hf.config, left_padded=xlnet)
  _assert_close(_hf_outputs(reloaded, hf_inputs), _hf_outputs(hf, hf_inputs))
  back_config, back = convert.from_hf(exported, hf_config)
  assert back_config.to_dict() == model_config.to_dict()
  assert jax.tree.all(jax.tree.map(np.array_equal, back, params))


def _random_params(model_config) -> dict:
  """Parameters of our model's shapes drawn from N(0, 0.1^2), LayerNorm scales from N(1, 0.1^2)."""
  rng = np.random.default_rng(2)
  draw = lambda path, s: rng.normal(float(path[-1].key == "scale"), 0.1, s.shape).astype(np.float32)
  return jax.tree_util.tree_map_with_path(draw, params_lib.abstract(model_config))


@pytest.mark.parametrize("head", ["classification", "span"])
def test_spanbert_task_model_exports_as_bert(head):
  model_config = models.default_config("spanbert", vocab_size=97, hidden_size=32, num_layers=2, num_heads=4,
                                       intermediate_size=37, max_position=24, head=head, num_labels=3)
  assert not model_config.pooler  # SpanBERT pretrains without one: classification starts a fresh pooler
  params = _random_params(model_config)
  hf_config, exported = convert.to_hf(model_config, params)
  hf = getattr(transformers, hf_config["architectures"][0])(transformers.AutoConfig.for_model(**hf_config)).eval()
  assert type(hf).__name__ == ("BertForSequenceClassification" if head == "classification" else
                               "BertForQuestionAnswering")
  hf.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
  inputs = _inputs(hf.config)
  _assert_close(_our_model(model_config, params)(inputs), _hf_outputs(hf, inputs))


TINY = {
    "bert": dict(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24, max_position=16),
    "xlnet": dict(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24),
    "electra": dict(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24, max_position=16,
                    embedding_size=8, generator_size=0.5),
    "spanbert": dict(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24, max_position=16),
    "gpt2": dict(vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24, max_position=16),
    "bart": dict(vocab_size=50, hidden_size=16, num_layers=2, num_decoder_layers=2, num_heads=2, num_decoder_heads=2,
                 intermediate_size=24, decoder_intermediate_size=24, max_position=16),
}
FAMILIES = {
    "bert": ("bert", {}), "roberta": ("bert", dict(position_offset=True, pooler=False, sentence_head="none",
                                                   classifier="roberta", max_position=18, pad_token_id=1)),
    "albert": ("bert", dict(embedding_size=8, embedding_projection=True, share="all", sentence_head="sop")),
    "electra": ("electra", {}), "xlnet": ("xlnet", {}), "spanbert": ("spanbert", {}), "bart": ("bart", {}),
    "gpt2": ("gpt2", {}),
}
# What only the pretraining model has (its heads), and what only the task model has (its head) beyond `classifier`
# or `qa_outputs`.
PRETRAINING_HEADS = ("mlm_head/", "sentence_head/", "sbo_head/", "generator/", "generator_head/", "discriminator_head/",
                     "lm_bias")


def _config(name: str, scan: bool, head: str):
  family, overrides = FAMILIES[name]
  return models.default_config(family, **(TINY[family] | overrides), scan_layers=scan, head=head, num_labels=3)


@functools.cache
def _shapes(name: str, scan: bool, head: str) -> dict:
  abstract = params_lib.abstract(_config(name, scan, head))
  return {k: v.shape for k, v in traverse_util.flatten_dict(abstract, sep="/").items()}


@pytest.mark.parametrize("scan", [False, True])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_task_tree_keeps_the_pretraining_encoder(name, scan):
  pretraining_config = _config(name, scan, "pretraining")
  pretraining = _shapes(name, scan, "pretraining")
  for head in ("classification", "span"):
    task_config = _config(name, scan, head)
    task = _shapes(name, scan, head)
    head_prefix = "classifier" if head == "classification" else "qa_outputs"
    pooled = head == "classification" and task_config.get("classifier", "") == "pooler"
    new = {k for k in task if k.startswith(head_prefix) or (pooled and not pretraining_config.pooler
                                                            and k.startswith("encoder/pooler/"))}
    left_behind = {k for k in pretraining if k.startswith(PRETRAINING_HEADS)
                   or (not pooled and k.startswith("encoder/pooler/"))}
    assert new and (left_behind or name in ("bart", "gpt2"))  # their LM heads are the token table
    assert set(task) - set(pretraining) == new
    assert set(pretraining) - set(task) == left_behind
    assert {k: task[k] for k in set(task) - new} == {k: pretraining[k] for k in set(pretraining) - left_behind}
    zeros = traverse_util.unflatten_dict({tuple(k.split("/")): np.zeros(v) for k, v in task.items()})
    other = _config(name, not scan, head)
    converted = models.family(other).to_layout(zeros, models.make_config(other), scanned=not scan)
    assert {k: v.shape for k, v in traverse_util.flatten_dict(converted, sep="/").items()} == _shapes(name, not scan,
                                                                                                   head)


def test_head_settings_are_checked():
  with pytest.raises(UserError, match="text-to-text"):
    models.validate_model_config(models.default_config("t5", head="classification"))
  with pytest.raises(UserError, match=r"model\.head"):
    models.validate_model_config(models.default_config("bert", head="regression"))
  with pytest.raises(UserError, match=r"model\.num_labels"):
    models.validate_model_config(models.default_config("xlnet", head="classification", num_labels=0))
  with pytest.raises(UserError, match=r"model\.classifier"):
    models.validate_model_config(models.default_config("bert", classifier="first"))
  assert models.make_config(models.default_config("electra", dropout=0.2)).head_dropout == 0.2  # HF's fallback
  assert models.make_config(models.default_config("electra", classifier_dropout=0.0)).head_dropout == 0.0


def test_params_command_counts_the_task_model(capsys):
  # BERT-base's encoder with pooler (DESIGN.md) + classifier 768 x 2 + 2; RoBERTa-base's encoder without pooler
  # (124,645,632 - 590,592) + dense 768 x 768 + 768 + out_proj 768 x 2 + 2: HF's BertForSequenceClassification and
  # RobertaForSequenceClassification.
  # Scanned layers: the same count (tests/test_params.py), traced once.
  assert cli.main(["params", "--config", "bert_base", "--config.model.head=classification",
                   "--config.model.scan_layers=True", "--json"]) == 0
  assert json.loads(capsys.readouterr().out)["total"] == 109_482_240 + 1_538
  model_config = config_lib.load_config("roberta_base", ["model.head=classification", "model.scan_layers=True"]).model
  assert params_lib.count(params_lib.abstract(model_config)) == 124_645_632 - 590_592 + 590_592 + 1_538
  # GPT2ForSequenceClassification: GPT-2's 124,439,808 + score 768 x 2 (no bias); BartForSequenceClassification
  # (3 labels): BART-base's 139,420,416 + dense 768 x 768 + 768 + out_proj 768 x 3 + 3.
  model_config = config_lib.load_config("gpt2", ["model.head=classification"]).model
  assert params_lib.count(params_lib.abstract(model_config)) == 124_439_808 + 1_536
  model_config = config_lib.load_config("bart_base", ["model.head=classification", "model.num_labels=3"]).model
  assert params_lib.count(params_lib.abstract(model_config)) == 139_420_416 + 590_592 + 2_307
