"""The encoder references of `bench --compare-hf` (bert_jax/bench/torch_encoders.py): built from the export of
our initial parameters, each one's loss on a synthetic batch equals our objective's training loss (dropout off);
TorchStep trains one; check() refuses a config transformers computes differently."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from bert_jax import config as config_lib, models
from bert_jax.bench import torch_encoders, torch_reference
from bert_jax.errors import UserError
from bert_jax.objectives import get_objective, replaced_token_detection, training_loss, unilm

BATCH = 4
# Tiny graphs: XLA's expensive CPU passes would cost more than running them (as tests/test_unilm.py).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
TINY = ["train.batch_size=8", "data.seq_len=16", "objective.max_predictions=5", "data.source=synthetic",
        "model.dropout=0", "model.attention_dropout=0"]


def _setup(name: str, overrides: tuple[str, ...] = ()) -> tuple:
  """(config, objective, a synthetic batch, [our initial params, the same perturbed]): at initialization every
  logit is near 0 and the loss near log V whatever a head does, so each case is also compared off it."""
  config = config_lib.load_config(name, [*TINY, *overrides])
  objective = get_objective(config)
  model = models.build_model(config.model)
  inputs = models.family(config.model).example_inputs(models.make_config(config.model))
  params = _run(lambda key: flax.linen.meta.unbox(model.init(key, **inputs)["params"]), jax.random.key(config.seed))
  leaves, tree = jax.tree_util.tree_flatten(params)
  rng = np.random.default_rng(1)
  perturbed = tree.unflatten([x + 0.2 * rng.standard_normal(x.shape, np.float32) for x in leaves])
  batch = _padded(objective.synthetic_batch(BATCH, np.random.default_rng(0)), config)
  return config, objective, batch, [params, perturbed]


def _padded(batch: dict, config) -> dict:
  """The batch with row 0's last 3 tokens padding (synthetic batches have none), no predictions there."""
  batch = {k: v.copy() for k, v in batch.items()}
  batch["input_ids"][0, -3:] = config.model.pad_token_id
  batch["attention_mask"][0, -3:] = 0
  for name in ("masked_weights", "sbo_weights"):
    if name in batch:
      batch[name][0] *= batch["masked_positions"][0] < batch["input_ids"].shape[1] - 3
  return batch


def _run(fn, *args):
  return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)


def _our_losses(config, objective, params_list: list, batch: dict, rngs=None) -> list[float]:
  model = models.build_model(config.model, deterministic=True)
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  loss = lambda p: training_loss(objective.forward(model, p, batch, rngs=rngs)[0], objective.counts(batch))
  return [float(x) for x in _run(lambda ps: [loss(p) for p in ps], params_list)]


def _reference_losses(config, params_list: list, batch: dict, **replace) -> tuple[list[float], object]:
  """The reference's loss built from the export of each params (methods in `replace` put in its own's place)."""
  losses = []
  for params in params_list:
    reference = torch_reference.reference_class(config)(config, torch_reference.export_weights(config, params))
    for name, method in replace.items():
      setattr(reference, name, method)
    with torch.no_grad():
      losses.append(float(reference.loss(reference.inputs(batch))))
  return losses, reference


def _assert_close(theirs: list[float], ours: list[float]) -> None:
  assert abs(ours[1] - ours[0]) > 0.05 * ours[0]  # the perturbation matters
  np.testing.assert_allclose(theirs, ours, rtol=1e-4)


@pytest.mark.parametrize("name, overrides, architecture", [
    ("bert_tiny", (), "BertForPreTraining"),
    ("bert_tiny", ("model.sentence_head=none", "objective.sentence_task=none", "model.pooler=false"),
     "BertForMaskedLM"),
    ("roberta_tiny", (), "RobertaForMaskedLM"),
    ("albert_tiny", ("model.classifier_dropout=0.1",), "AlbertForPreTraining"),  # SOP; its head's dropout is ours
])
def test_masked_lm_loss_equals_ours(name, overrides, architecture):
  config, objective, batch, params = _setup(name, overrides)
  assert torch_reference.export_weights(config, params[0])["hf_config"]["architectures"] == [architecture]
  _assert_close(_reference_losses(config, params, batch)[0], _our_losses(config, objective, params, batch))


def test_unilm_loss_equals_ours_per_mask_type():
  """Without a key ours gives row r the type EVAL_TYPES[r % 6] (all four in a batch of 6); with a key, one type for
  the batch, here the seq2seq one; the reference takes the same types in place of its own draw."""
  config, objective, _, params = _setup("unilm_tiny")
  batch = _padded(objective.synthetic_batch(6, np.random.default_rng(0)), config)
  assert torch_encoders.UNILM_PROPORTIONS == unilm.PROPORTIONS
  assert torch_encoders.UNILM_LM_SEGMENTS == unilm.LM_SEGMENTS and config.objective.lm_segments
  eval_types = lambda batch_size: np.asarray(unilm.mask_types(batch_size, None), np.int64)
  theirs, _ = _reference_losses(config, params, batch, mask_types=eval_types)
  _assert_close(theirs, _our_losses(config, objective, params, batch))
  key = next(jax.random.key(i) for i in range(100) if int(unilm.mask_types(1, {"dropout": jax.random.key(i)})[0]) == 1)
  theirs, _ = _reference_losses(config, params, batch, mask_types=lambda batch_size: np.ones(batch_size, np.int64))
  _assert_close(theirs, _our_losses(config, objective, params, batch, {"dropout": key}))


def test_span_boundary_loss_equals_ours():
  config, objective, batch, params = _setup("spanbert_tiny")
  assert set(torch_reference.export_weights(config, params[0])["own"]) == {
      f"sbo_head/{k}" for k in ("position_embeddings/embedding", "bias", "dense_1/kernel", "dense_1/bias",
                                "dense_2/kernel", "dense_2/bias", "layer_norm_1/scale", "layer_norm_1/bias",
                                "layer_norm_2/scale", "layer_norm_2/bias")}
  batch["sbo_relative"] = np.random.default_rng(1).integers(0, 4, batch["sbo_relative"].shape).astype(np.int32)
  batch["sbo_weights"][:, 0] = 0.0  # SBO targets a subset of the MLM targets
  _assert_close(_reference_losses(config, params, batch)[0], _our_losses(config, objective, params, batch))


def test_replaced_token_loss_equals_ours_on_the_same_draws():
  """Ours draws with a fixed key without rngs; the reference is given those draws (its own sampler replaced)."""
  config, objective, batch, params = _setup("electra_tiny")
  model = models.build_model(config.model, deterministic=True)
  jbatch = {k: jnp.asarray(v) for k, v in batch.items()}
  key = replaced_token_detection.step_keys(None)[2]

  def draws(params):
    logits = model.apply({"params": params}, jbatch["input_ids"], jbatch["token_type_ids"], jbatch["attention_mask"],
                         jbatch["masked_positions"], method="generate")
    sampled, _, labels = replaced_token_detection.corrupt(jbatch, logits, key, config.objective.temperature)
    return sampled, labels.sum()

  theirs = []
  for p, (sampled, replaced) in zip(params, _run(lambda ps: [draws(q) for q in ps], params)):
    assert 0 < float(replaced) < BATCH * 16
    given = lambda logits_BPV, sampled=sampled: torch.from_numpy(np.asarray(sampled, np.int64))
    losses, reference = _reference_losses(config, [p], batch, sample=given)
    theirs += losses
  _assert_close(theirs, _our_losses(config, objective, params, batch))
  embeddings = reference.discriminator.electra.embeddings.word_embeddings.weight
  assert reference.generator.generator_lm_head.weight is embeddings  # one table, tied to both heads
  names = [n for n, _ in reference.named_parameters()]
  assert len(names) == len({id(p) for _, p in reference.named_parameters()})
  assert not any(n.startswith("generator.electra.embeddings") for n in names)


def test_replaced_token_sampler_follows_the_softmax():
  reference = torch_encoders.ReplacedTokenDetection.__new__(torch_encoders.ReplacedTokenDetection)
  reference.temperature = 2.0
  torch.manual_seed(0)
  logits = torch.log(torch.tensor([0.1, 0.2, 0.7])).repeat(20000, 1) * 2.0  # softmax(logits / 2) = 0.1, 0.2, 0.7
  shares = np.bincount(reference.sample(logits[None]).numpy().ravel(), minlength=3) / 20000
  np.testing.assert_allclose(shares, [0.1, 0.2, 0.7], atol=0.015)


def test_torch_step_trains_two_steps():
  config, _, batch, params = _setup("albert_tiny")
  step = torch_reference.TorchStep(config, [batch], torch_reference.export_weights(config, params[0]))
  step.run(1)
  assert len(step.losses) == 2 and np.isfinite(step.losses).all() and step.losses[1] != step.losses[0]
  assert step.description["architecture"] == "AlbertForPreTraining"


def test_check_refuses_what_transformers_computes_otherwise():
  for name, overrides, message in [("albert_tiny", ["model.share=attention"], "share=all"),
                                   ("roberta_tiny", ["model.hidden_act=relu"], "gelu"),
                                   ("electra_tiny", ["model.hidden_act=relu"], "gelu")]:
    config = config_lib.load_config(name, overrides)
    with pytest.raises(UserError, match=message):
      torch_reference.check_hf_comparable(config)
  torch_reference.check_hf_comparable(config_lib.load_config("albert_tiny"))
