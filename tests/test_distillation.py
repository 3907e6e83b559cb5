"""The distillation objective: the release's losses (against torch), where a teacher is found, the teacher frozen and
sharded like the student inside the compiled step, the student's start from it, and `plan` counting both."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from bert_jax import config as config_lib, models, plan
from bert_jax.convert import weights
from bert_jax.errors import UserError
from bert_jax.models import distilbert
from bert_jax.objectives import distillation, teacher as teacher_lib
from bert_jax.train import state as state_lib

TEACHER_CONFIG = '''from bert_jax import recipes


def get_config():
  return recipes.tiny(recipes.bert_config(), hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512)
'''
STUDENT = ["train.batch_size=8", "eval.batch_size=8", "objective.max_predictions=10"]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
  """What `convert --from-hf` writes (config.py and params) for a random 2-layer BERT of the demo's width."""
  out = tmp_path_factory.mktemp("teacher")
  (out / "config.py").write_text(TEACHER_CONFIG)
  model_config = config_lib.load_config(str(out / "config.py")).model
  params = models.build_model(model_config).init(jax.random.key(3), **state_lib.example_inputs(model_config))["params"]
  weights.save_params(out / "params", jax.tree_util.tree_map(np.asarray, nn.meta.unbox(params)))
  return out


def test_soft_targets_and_cosine_are_the_releases():
  """KLDivLoss(batchmean) of log_softmax(s / T) against softmax(t / T), times T^2; CosineEmbeddingLoss with target 1."""
  rng = np.random.default_rng(0)
  student, teacher = rng.normal(size=(2, 5, 11)).astype(np.float32) * 3
  ours = np.asarray(distillation.soft_cross_entropy(jnp.asarray(student), jnp.asarray(teacher), 2.0))
  theirs = torch.nn.KLDivLoss(reduction="batchmean")(
      torch.log_softmax(torch.from_numpy(student).reshape(-1, 11) / 2, -1),
      torch.softmax(torch.from_numpy(teacher).reshape(-1, 11) / 2, -1)) * 4
  assert np.mean(ours) == pytest.approx(float(theirs), rel=1e-5)
  x, y = rng.normal(size=(2, 3, 4, 8)).astype(np.float32)
  cos = 1 - np.asarray(distillation.cosine(jnp.asarray(x), jnp.asarray(y)))
  theirs = torch.nn.CosineEmbeddingLoss()(torch.from_numpy(x).reshape(-1, 8), torch.from_numpy(y).reshape(-1, 8),
                                          torch.ones(12))
  assert np.mean(cos) == pytest.approx(float(theirs), rel=1e-5)


def test_a_teacher_is_found_in_a_workdir_a_step_or_an_import(teacher_dir, tmp_path):
  imported = teacher_lib.find(str(teacher_dir))
  assert imported.params_path == str(teacher_dir / "params") and imported.model_config.num_layers == 2
  run = tmp_path / "run"
  for step in (100, 200):
    weights.save_params(run / "checkpoints" / str(step) / "params", weights.restore_params(teacher_dir / "params"))
  (run / "config.json").write_text(config_lib.load_config(str(teacher_dir / "config.py")).to_json())
  assert teacher_lib.find(str(run)).params_path == str(run / "checkpoints" / "200")
  assert teacher_lib.find(str(run / "checkpoints" / "100" / "params")).params_path == str(run / "checkpoints" / "100")
  with pytest.raises(UserError, match="neither a run's workdir"):
    teacher_lib.find(str(tmp_path))


def test_a_teacher_must_fit_the_student(teacher_dir):
  with pytest.raises(UserError, match="vocabulary has 4096 ids and model.vocab_size is 512"):
    distillation.Distillation(config_lib.load_config("distilbert_tiny", [
        f"objective.teacher={teacher_dir}", "model.vocab_size=512"]))
  with pytest.raises(UserError, match="objective.alpha_cos=0"):
    distillation.Distillation(config_lib.load_config("distilbert_tiny", [
        f"objective.teacher={teacher_dir}", "model.hidden_size=64", "objective.init_from_teacher=false"]))
  with pytest.raises(UserError, match="teacher's layers, whose intermediate_size is 512; set "
                                      "--config.model.intermediate_size=512"):
    distillation.Distillation(config_lib.load_config("distilbert_tiny", [
        f"objective.teacher={teacher_dir}", "model.intermediate_size=256"]))
  with pytest.raises(UserError, match="objective.packing=full_sentences"):
    distillation.Distillation(config_lib.load_config("distilbert_tiny", ["objective.packing=pairs"]))


def test_the_teacher_is_frozen_sharded_like_the_student_and_starts_it(teacher_dir):
  from bert_jax.train.trainer import Trainer

  config = config_lib.load_config("distilbert_tiny", [*STUDENT, f"objective.teacher={teacher_dir}", "mesh.data=1",
                                                      "mesh.fsdp=8"])
  trainer = Trainer(config)
  state = trainer.init_state()
  teacher = weights.restore_params(teacher_dir / "params")
  start = distilbert.from_bert(teacher, distilbert.make_config(config.model))
  assert np.array_equal(np.asarray(state.params["encoder"]["layers_0"]["ffn"]["output"]["kernel"]),
                        teacher["encoder"]["ffn_0"]["output"]["kernel"])
  assert np.array_equal(np.asarray(state.params["encoder"]["embeddings"]["position_embeddings"]["embedding"]),
                        start["encoder"]["embeddings"]["position_embeddings"]["embedding"])
  frozen = trainer.frozen.params()
  word = lambda tree: tree["encoder"]["embeddings"]["word_embeddings"]["embedding"]
  assert word(frozen).sharding == word(state.params).sharding and not word(frozen).sharding.is_fully_replicated
  opt_leaves = len(jax.tree_util.tree_leaves(state.opt_state))
  batch = trainer.objective.synthetic_batch(8, np.random.default_rng(0))
  state, outputs = trainer.train_step(state, {k: jnp.asarray(v) for k, v in batch.items()})
  assert set(outputs["sums"]) == {"mlm", "soft", "cos"} and np.isfinite(float(outputs["loss"]))
  assert len(jax.tree_util.tree_leaves(state.opt_state)) == opt_leaves  # the teacher has no optimizer state
  assert float(outputs["grad_norm"]) > 0
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(jax.device_get(trainer.frozen.params())),
                                                  jax.tree_util.tree_leaves(jax.device_get(frozen))))
  evaluated, _ = trainer.eval_step(state.params, {k: jnp.asarray(v) for k, v in batch.items()})
  assert "teacher_correct" in evaluated["metrics"]


def test_plan_counts_the_teacher_beside_the_student(teacher_dir):
  config = config_lib.load_config("distilbert_tiny", [*STUDENT, f"objective.teacher={teacher_dir}", "mesh.data=1"])
  result = plan.make_plan(config, jax.devices()[:1])
  memory = result["memory"]
  assert result["frozen_parameters"] == 975_362 and memory["frozen_parameters"] == 4 * 975_362
  state_and_batch = memory["parameters"] + memory["optimizer_state"] + memory["batch"] + 4 + 8  # step, rng
  # the teacher is an argument of the compiled step (less its pooler and NSP head, which jit drops unused)
  assert 0.95 * memory["frozen_parameters"] < memory["arguments"] - state_and_batch <= memory["frozen_parameters"]
  assert abs(result["xla_over_model"] - 1) < 0.15, result["xla_over_model"]  # the teacher's forward counted once
  alone = plan.make_plan(config_lib.load_config("distilbert_tiny", [*STUDENT, "mesh.data=1"]), jax.devices()[:1])
  assert result["model_flops_per_token"] > 1.5 * alone["model_flops_per_token"]


def test_the_bench_reference_is_the_student_alone(teacher_dir):
  """`bench --compare-hf`'s PyTorch model computes our loss of a student without a teacher, and refuses one with."""
  from bert_jax.bench import torch_distillation, torch_reference
  from bert_jax.objectives import get_objective, training_loss

  config = config_lib.load_config("distilbert_tiny", [*STUDENT, "data.seq_len=16", "objective.max_predictions=5",
                                                      "objective.teacher=", "data.source=synthetic"])
  objective = get_objective(config)
  model = models.build_model(config.model)
  rng = np.random.default_rng(1)
  abstract = nn.meta.unbox(jax.eval_shape(lambda: model.init(jax.random.key(0), **state_lib.example_inputs(
      config.model))["params"]))
  params = jax.tree_util.tree_map(lambda x: rng.normal(0, 0.2, x.shape).astype(np.float32), abstract)
  batch = objective.synthetic_batch(4, np.random.default_rng(0))
  ours = training_loss(objective.forward(model, params, batch)[0], objective.counts(batch))
  reference = torch_distillation.StudentAlone(config, torch_reference.export_weights(config, params))
  reference.model.eval()
  with torch.no_grad():
    theirs = float(reference.loss(reference.inputs(batch)))
  assert theirs == pytest.approx(float(ours), rel=1e-4)
  with pytest.raises(UserError, match="without its teacher"):
    with_teacher = config_lib.load_config("distilbert_tiny", [f"objective.teacher={teacher_dir}"])
    torch_distillation.StudentAlone.check(with_teacher)
