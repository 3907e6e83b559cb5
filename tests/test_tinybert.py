"""TinyBERT: the layer mapping and losses against the release's (in torch), what the BERT encoder sows against Hugging
Face's hidden states and attention, the teacher's checks, both objectives' losses on a frozen teacher, the exact
count and the export as a BERT (fit_dense left behind) within 1e-4."""

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from bert_jax import config as config_lib, convert, models, params as params_lib
from bert_jax.convert import weights
from bert_jax.errors import UserError
from bert_jax.objectives import get_objective, tinybert_losses, tinybert_task
from bert_jax.train import state as state_lib

TEACHER_CONFIG = '''from bert_jax import recipes


def get_config():
  return recipes.tiny(recipes.bert_config(), hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512)
'''


def _perturbed(model_config, seed: int) -> dict:
  """Random parameters of a model, every one moved off its initial value (LayerNorms included)."""
  params = nn.meta.unbox(models.build_model(model_config).init(
      jax.random.key(seed), **state_lib.example_inputs(model_config))["params"])
  keys = iter(jax.random.split(jax.random.key(seed + 1), len(jax.tree_util.tree_leaves(params))))
  return jax.tree_util.tree_map(lambda x: np.asarray(x + 0.1 * jax.random.normal(next(keys), x.shape)), params)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
  """What `convert --from-hf` writes (config.py and params) for a random 2-layer BERT of the demo's width."""
  out = tmp_path_factory.mktemp("teacher")
  (out / "config.py").write_text(TEACHER_CONFIG)
  weights.save_params(out / "params", _perturbed(config_lib.load_config(str(out / "config.py")).model, 3))
  return out


def _inputs(batch: int = 3, length: int = 12, vocab: int = 97, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  mask = (np.arange(length)[None] < np.array([length, length - 3, 5][:batch])[:, None]).astype(np.int32)
  ids = np.where(mask, rng.integers(5, vocab, (batch, length)), 0).astype(np.int32)
  types = ((np.arange(length)[None] >= 4) * mask).astype(np.int32)
  return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def test_student_layer_m_learns_teacher_layer_m_n_over_m():
  assert tinybert_losses.teacher_layers(4, 12) == [3, 6, 9, 12]
  assert tinybert_losses.teacher_layers(1, 2) == [2]
  with pytest.raises(UserError, match="multiple"):
    tinybert_losses.teacher_layers(5, 12)


def _release_losses(student_reps, student_atts, teacher_reps, teacher_atts, fit, mask):
  """general_distill.py's loss: the attention scores as its BertSelfAttention returns them (the extended mask's
  -10000 added), zeroed where <= -1e2, and MSELoss on every layer block's last attention and first state."""
  mse = torch.nn.MSELoss()
  extended = (1.0 - mask[:, None, None, :].float()) * -10000.0
  per_block = len(teacher_atts) // len(student_atts)
  att_loss = rep_loss = 0.0
  for k, student_att in enumerate(student_atts):
    s, t = student_att + extended, teacher_atts[k * per_block + per_block - 1] + extended
    att_loss += mse(torch.where(s <= -1e2, torch.zeros_like(s), s), torch.where(t <= -1e2, torch.zeros_like(t), t))
  for k, student_rep in enumerate(student_reps):
    rep_loss += mse(fit(student_rep), teacher_reps[k * per_block])
  return float(rep_loss), float(att_loss)


def test_losses_are_the_releases():
  rng = np.random.default_rng(0)
  B, L, D, F, N, M, T = 3, 12, 8, 16, 2, 2, 4
  mask = _inputs(B, L)["attention_mask"]
  states = [rng.normal(size=(B, L, D)).astype(np.float32) for _ in range(M + 1)]
  scores = [3 * rng.normal(size=(B, N, L, L)).astype(np.float32) for _ in range(M)]
  scores[0][0, 0, 0, 0] = -150.0  # a real logit the release zeroes too
  teacher_states = [rng.normal(size=(B, L, F)).astype(np.float32) for _ in range(T + 1)]
  teacher_scores = [3 * rng.normal(size=(B, N, L, L)).astype(np.float32) for _ in range(T)]
  kernel, bias = rng.normal(size=(D, F)).astype(np.float32), rng.normal(size=F).astype(np.float32)
  student_cfg = models.default_config("bert", hidden_size=D, num_heads=N, num_layers=M, fit_size=F)
  sums, counts = tinybert_losses.intermediate_sums(
      student_cfg, {"fit_dense": {"kernel": kernel, "bias": bias}}, (states, scores), (teacher_states, teacher_scores),
      jnp.asarray(mask), jnp.ones(B))
  fit = torch.nn.Linear(D, F)
  with torch.no_grad():
    fit.weight.copy_(torch.tensor(kernel.T))
    fit.bias.copy_(torch.tensor(bias))
    as_torch = lambda xs: [torch.tensor(x) for x in xs]
    rep, att = _release_losses(as_torch(states), as_torch(scores), as_torch(teacher_states), as_torch(teacher_scores),
                               fit, torch.tensor(mask))
  np.testing.assert_allclose(float(sums["hidden"] / counts["hidden"]), rep, rtol=1e-5)
  np.testing.assert_allclose(float(sums["attention"] / counts["attention"]), att, rtol=1e-5)


def test_the_encoder_sows_hugging_faces_hidden_states_and_attention_logits():
  model_config = config_lib.load_config("tinybert_tiny", ["model.vocab_size=97", "model.num_layers=2"]).model
  params = _perturbed(model_config, 0)
  inputs = _inputs()
  outputs, states, scores = tinybert_losses.collect(models.build_model(model_config), params, tuple(
      jnp.asarray(inputs[k]) for k in ("input_ids", "token_type_ids", "attention_mask")))
  hf_config, state_dict = convert.to_hf(model_config, params)
  reference = transformers.BertModel(transformers.BertConfig(**hf_config, attn_implementation="eager")).eval()
  reference.load_state_dict({k.removeprefix("bert."): torch.tensor(v) for k, v in state_dict.items()
                             if k.startswith("bert.")})
  with torch.no_grad():
    expected = reference(**{k: torch.tensor(v).long() for k, v in inputs.items()}, output_hidden_states=True,
                         output_attentions=True)
  assert len(states) == 3 and len(scores) == 2
  np.testing.assert_allclose(np.asarray(outputs["sequence_output"]), np.asarray(states[-1]), atol=1e-6)
  for ours, theirs in zip(states, expected.hidden_states):
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), atol=1e-4)
  keys = inputs["attention_mask"][:, None, None, :].astype(bool)
  for ours, theirs in zip(scores, expected.attentions):
    probs = jax.nn.softmax(jnp.where(keys, ours, -1e9), axis=-1)
    np.testing.assert_allclose(np.asarray(probs), theirs.numpy(), atol=1e-5)


def test_a_teacher_must_fit_the_student(teacher_dir):
  for overrides, message in ((["model.num_heads=4"], "head by head"), (["model.fit_size=64"], "fit_size=128"),
                             (["model.num_layers=3", "model.hidden_size=64"], "multiple"),
                             (["model.scan_layers=true"], "scan_layers=false")):
    with pytest.raises(UserError, match=message):
      get_objective(config_lib.load_config("tinybert_tiny", [f"objective.teacher={teacher_dir}", *overrides]))


def _loss_and_grads(config, objective, params, batch, frozen):
  model = models.build_model(config.model)

  def loss(p):
    sums, _ = objective.forward(model, p, batch, frozen=frozen)
    counts = objective.counts(batch)
    return sum(sums[t] / counts[t] for t in sums), sums

  return jax.grad(loss, has_aux=True)(params)


def test_general_distillation_trains_the_student_and_its_projection(teacher_dir):
  config = config_lib.load_config("tinybert_tiny", [f"objective.teacher={teacher_dir}", "train.batch_size=4",
                                                    "data.seq_len=16"])
  objective = get_objective(config)
  assert objective.frozen_source is not None and not objective.frozen_source.model_config.scan_layers
  rng = np.random.default_rng(0)
  batch = {k: jnp.asarray(v) for k, v in objective.synthetic_batch(4, rng).items()}
  frozen = jax.tree_util.tree_map(jnp.asarray, weights.restore_params(str(teacher_dir / "params")))
  grads, sums = _loss_and_grads(config, objective, _perturbed(config.model, 1), batch, frozen)
  assert set(sums) == {"hidden", "attention"} and all(float(v) > 0 for v in sums.values())
  flat = traverse_util.flatten_dict(grads, sep="/")
  assert np.abs(flat["fit_dense/kernel"]).sum() > 0 and np.abs(flat["encoder/attention_0/self/query/kernel"]).sum() > 0
  assert np.abs(flat["mlm_head/bias"]).sum() == 0  # the MLM labels play no part
  summary = objective.summarize(sums, sums, objective.counts(batch))
  assert summary["loss"] == pytest.approx(summary["hidden_loss"] + summary["attention_loss"], rel=1e-5)


def test_prediction_loss_is_the_releases_soft_cross_entropy():
  rng = np.random.default_rng(1)
  student, teacher = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
  T = 2.0
  targets = torch.softmax(torch.tensor(teacher) / T, dim=-1)
  expected = (-targets * torch.log_softmax(torch.tensor(student) / T, dim=-1)).mean()
  ours = tinybert_task.prediction_loss(jnp.asarray(student), jnp.asarray(teacher), T, regression=False)
  np.testing.assert_allclose(float(jnp.mean(ours)), float(expected), rtol=1e-6)
  np.testing.assert_allclose(tinybert_task.prediction_loss(jnp.asarray(student), jnp.asarray(teacher), T, True),
                             (student[:, 0] - teacher[:, 0]) ** 2, rtol=1e-6)


def test_the_4l_312_model_is_hugging_faces_tinybert_count():
  model = transformers.BertModel(transformers.BertConfig(hidden_size=312, num_hidden_layers=4, num_attention_heads=12,
                                                         intermediate_size=1200))
  ours = params_lib.count_model(config_lib.load_config("tinybert_4l_312").model)["encoder"]
  assert sum(p.numel() for p in model.parameters()) == ours == 14_350_248


def test_the_student_exports_as_bert_without_its_projection():
  model_config = config_lib.load_config("tinybert_tiny", ["model.vocab_size=97"]).model
  params = _perturbed(model_config, 2)
  hf_config, state_dict = convert.to_hf(model_config, params)
  assert hf_config["architectures"] == ["BertForPreTraining"] and not any("fit" in k for k in state_dict)
  reference = transformers.BertForPreTraining(transformers.BertConfig(**hf_config)).eval()
  missing, unexpected = reference.load_state_dict({k: torch.tensor(v) for k, v in state_dict.items()}, strict=False)
  assert not unexpected and all("position_ids" in k or "decoder" in k for k in missing)
  inputs = _inputs()
  ours = models.build_model(model_config).apply({"params": params}, *(jnp.asarray(inputs[k]) for k in (
      "input_ids", "token_type_ids", "attention_mask")))
  with torch.no_grad():
    theirs = reference(**{k: torch.tensor(v).long() for k, v in inputs.items()})
  np.testing.assert_allclose(np.asarray(ours["mlm_logits"]), theirs.prediction_logits.numpy(), atol=1e-4)
  np.testing.assert_allclose(np.asarray(ours["sentence_logits"]), theirs.seq_relationship_logits.numpy(), atol=1e-4)
