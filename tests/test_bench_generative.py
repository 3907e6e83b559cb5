"""The transformers references of the generative objectives (bert_jax/bench/torch_generative.py) compute our
training loss: from the export of our initial parameters, on synthetic batches, without dropout."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import config as config_lib, models
from bert_jax.bench import torch_generative, torch_reference
from bert_jax.errors import UserError
from bert_jax.objectives import get_objective, permutation_lm, training_loss
from bert_jax.train.trainer import Trainer

B = 8
BASE = [f"train.batch_size={B}", "data.source=synthetic"]
ONE_LAYER = ["model.num_layers=1", "model.num_decoder_layers=1"]  # compiles faster; xlnet keeps two for its memory
CONFIGS = {
    "t5_v1_1": ("t5_tiny", ["data.seq_len=32", "objective.targets_length=8", "objective.z_loss=0.1", *ONE_LAYER]),
    "t5_v1_0": ("t5_tiny", ["data.seq_len=32", "objective.targets_length=8", "model.feed_forward_proj=relu",
                            "model.tie_word_embeddings=true", *ONE_LAYER]),
    "xlnet": ("xlnet_tiny", ["data.seq_len=32", "model.reuse_len=16", "model.mem_len=24", "objective.perm_size=8",
                             "objective.num_predict=6", "model.dropout=0.0"]),
    "gpt2": ("gpt2_tiny", ["data.seq_len=24", "model.dropout=0.0", "model.embedding_dropout=0.0",
                           "model.attention_dropout=0.0", "model.num_layers=1"]),
    "bart": ("bart_tiny", ["data.seq_len=24", "model.dropout=0.0", "model.attention_dropout=0.0",
                           "model.activation_dropout=0.0", *ONE_LAYER]),
}


@functools.cache
def setup(name: str):
  """(config, our initial parameters, objective, two synthetic batches)."""
  spec, overrides = CONFIGS[name]
  config = config_lib.load_config(spec, BASE + overrides)
  params = jax.device_get(Trainer(config).init_state().params)
  objective = get_objective(config)
  batches = [objective.synthetic_batch(B, np.random.default_rng(seed)) for seed in (1, 2)]
  return config, params, objective, batches


def perturbed(params, scale: float = 0.2):
  """The parameters plus N(0, scale) noise: at the tiny initial weights the logits are nearly uniform, and a term
  computed wrongly would hardly move the loss."""
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map(lambda x: (x + rng.normal(0.0, scale, x.shape)).astype(np.float32), params)


def our_losses(config, params_list, objective, batches) -> list[list[float]]:
  """For each parameter tree, the training loss of each batch in turn (memory carried from zeros, as the train state
  carries it)."""
  model = models.build_model(config.model)

  @jax.jit
  def loss(params, batch, memory):
    if memory is None:
      sums, _ = objective.forward(model, params, batch)
    else:
      sums, _, memory = objective.forward_carrying(model, params, batch, memory)
    return training_loss(sums, objective.counts(batch)), memory

  results = []
  for params in params_list:
    memory = jnp.zeros(*objective.memory_spec(B)) if getattr(objective, "carries_memory", False) else None
    losses = []
    for batch in batches:
      value, memory = loss(params, batch, memory)
      losses.append(float(value))
    results.append(losses)
  return results


def reference_losses(config, params, batches) -> list[float]:
  torch_reference.check_hf_comparable(config)
  weights = torch_reference.export_weights(config, params)
  reference = torch_reference.reference_class(config)(config, weights)
  return [float(reference.loss(reference.inputs(batch)).detach()) for batch in batches]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_reference_loss_equals_ours(name):
  config, params, objective, batches = setup(name)
  ours = our_losses(config, [params, perturbed(params)], objective, batches)
  assert all(abs(loss - np.log(config.model.vocab_size)) > 0.3 for loss in ours[1])  # far from uniform logits
  np.testing.assert_allclose(reference_losses(config, params, batches), ours[0], rtol=1e-4)
  np.testing.assert_allclose(reference_losses(config, perturbed(params), batches), ours[1], rtol=1e-4)


def test_t5_v1_1_head_stays_its_own_and_z_loss_counts():
  config, params, _, batches = setup("t5_v1_1")
  weights = torch_reference.export_weights(config, params)
  reference = torch_reference.reference_class(config)(config, weights)
  model = reference.model
  assert model.lm_head.weight is not model.shared.weight
  np.testing.assert_array_equal(model.lm_head.weight.detach().numpy(), weights["state_dict"]["lm_head.weight"])
  np.testing.assert_array_equal(model.shared.weight.detach().numpy(), weights["state_dict"]["shared.weight"])
  ours = sum(p.size for p in jax.tree_util.tree_leaves(params))
  assert sum(p.numel() for _, p in reference.named_parameters()) == ours
  inputs = reference.inputs(batches[0])
  with_z = float(reference.loss(inputs).detach())
  reference.z_loss = 0.0
  assert with_z - float(reference.loss(inputs).detach()) > 1e-3  # the z-loss term is present and moves the loss


def test_xlnet_per_row_directions_equal_transformers_bi_data():
  """Rows flagged reversed get the backward relative positions transformers' bi_data gives a batch's second half."""
  config, params, _, batches = setup("xlnet")
  weights = torch_reference.export_weights(config, perturbed(params))

  def first_loss(reversed_B: np.ndarray, bi_data_halves: bool = False) -> float:
    reference = torch_reference.reference_class(config)(config, weights)  # zero memory
    if bi_data_halves:  # transformers' own relative_positional_encoding: first half forwards, second backwards
      reference.model = torch_reference.hf_model({**weights["hf_config"], "bi_data": True}, weights["state_dict"])
    return float(reference.loss(reference.inputs({**batches[0], "reversed": reversed_B})).detach())

  halves = np.repeat(np.array([0, 1], np.int32), B // 2)
  np.testing.assert_allclose(first_loss(halves), first_loss(halves, bi_data_halves=True), rtol=1e-6)
  assert abs(first_loss(halves) - first_loss(np.zeros(B, np.int32))) > 1e-4  # the direction matters


def test_permutation_mask_is_the_objectives():
  batch = setup("xlnet")[3][0]
  np.testing.assert_array_equal(torch_generative.permutation_mask(batch["perm_rank"], batch["is_target"]),
                                permutation_lm.permutation_mask(batch["perm_rank"], batch["is_target"]))


def test_torch_step_trains_xlnet_with_memory():
  config, params, _, batches = setup("xlnet")
  step = torch_reference.TorchStep(config, batches, torch_reference.export_weights(config, params))
  step.run(1)
  assert len(step.losses) == 2 and np.isfinite(step.losses).all()
  assert step.description["architecture"] == "XLNetLMHeadModel"
  assert [tuple(m.shape) for m in step.reference.mems] == [(24, B, 64)] * 2


def test_check_rejects_what_transformers_lacks():
  spec, overrides = CONFIGS["bart"]
  with pytest.raises(UserError, match="layer_norm_eps=1e-5"):
    torch_reference.check_hf_comparable(config_lib.load_config(spec, BASE + overrides + ["model.layer_norm_eps=1e-6"]))
  for spec, overrides in CONFIGS.values():
    torch_reference.check_hf_comparable(config_lib.load_config(spec, BASE + overrides))
