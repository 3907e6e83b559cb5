"""Replaced-token detection on real masked batches of the demo corpus: the release's masking (15%, 85% [MASK],
15% kept, none random, one segment, no sentence task), the generator's draws (softmax sampling), discriminator
labels equal to (input != original) position by position, the share of replaced tokens, and the loss terms."""

from data_helpers import originals, prepared_workdir, take, tiny_config
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import models
from bert_jax.data import pipeline
from bert_jax.objectives import get_objective, replaced_token_detection

BATCHES = 8  # x 32 sequences of 64 tokens
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}  # tiny graphs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  config = tiny_config("electra_tiny")
  workdir = prepared_workdir(tmp_path_factory, config)
  objective = get_objective(config)
  batch = take(pipeline.train_dataset(config, objective, workdir), BATCHES)
  return dict(config=config, objective=objective, batch=batch, tokenizer=pipeline.load_tokenizer(config, workdir))


def test_masking_is_the_releases(setup):
  batch, tokenizer = setup["batch"], setup["tokenizer"]
  assert set(batch) == set(setup["objective"].feature_spec(1)) and "sentence_label" not in batch
  assert (batch["token_type_ids"] == 0).all()  # one segment
  original = originals(batch)
  rows, slots = np.nonzero(batch["masked_weights"])
  at = batch["input_ids"][rows, batch["masked_positions"][rows, slots]]
  is_mask = at == tokenizer.mask_id
  kept = at == batch["masked_ids"][rows, slots]
  assert (is_mask | kept).all()  # never a random token
  assert abs(is_mask.mean() - 0.85) < 0.04, is_mask.mean()
  maskable = (batch["attention_mask"] == 1) & (original != tokenizer.cls_id) & (original != tokenizer.sep_id)
  share = len(rows) / maskable.sum()
  assert abs(share - 0.15) < 0.01, share


def _compiled(fn, *args):
  return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)


@pytest.fixture(scope="module")
def generator(setup):
  """The tiny ELECTRA with random weights, and its generator's logits at the batch's masked positions."""
  config = setup["config"]
  batch = {k: jnp.asarray(v) for k, v in setup["batch"].items()}
  model = models.build_model(config.model)
  inputs = models.family(config.model).example_inputs(models.make_config(config.model))
  key = jax.random.key(1)
  params = _compiled(lambda k: model.init(k, **inputs)["params"], key)(key)
  generate = lambda p, b: model.apply({"params": p}, b["input_ids"], b["token_type_ids"], b["attention_mask"],
                                      b["masked_positions"], method="generate")
  return dict(model=model, params=params, batch=batch, logits=_compiled(generate, params, batch)(params, batch))


def test_labels_and_replaced_share(setup, generator):
  config, batch = setup["config"], generator["batch"]
  original = originals({k: np.asarray(v) for k, v in batch.items()})
  weights = np.asarray(batch["masked_weights"])
  tokens = float(batch["attention_mask"].sum())
  random_logits = generator["logits"]
  ids = np.asarray(batch["masked_ids"])
  one_hot = jax.nn.one_hot(ids, config.model.vocab_size)
  # a random generator, and one that gives the original token half its mass
  boosted = jnp.where(one_hot > 0, jnp.log(config.model.vocab_size - 1.0), 0.0)
  for logits in (random_logits, boosted):
    p_original = np.asarray(jnp.take_along_axis(jax.nn.softmax(logits), ids[..., None], -1)[..., 0])
    sampled, fake, labels = map(np.asarray, replaced_token_detection.corrupt(batch, logits, jax.random.key(3), 1.0))
    np.testing.assert_array_equal(labels, (fake != original) & (np.asarray(batch["attention_mask"]) == 1))
    rows, slots = np.nonzero(weights)
    positions = np.asarray(batch["masked_positions"])[rows, slots]
    assert (fake[rows, positions] == sampled[rows, slots]).all()
    untouched = np.ones_like(fake, bool)
    untouched[rows, positions] = False
    assert (fake[untouched] == original[untouched]).all()
    expected = (weights * (1 - p_original)).sum()
    spread = np.sqrt((weights * p_original * (1 - p_original)).sum())
    assert abs(labels.sum() - expected) <= 4 * spread + 1, (labels.sum(), expected, spread)
    assert labels.sum() / tokens == pytest.approx(expected / tokens, abs=0.01)
  assert abs(labels.sum() / weights.sum() - 0.5) < 0.05  # the boosted generator draws the original half the time


def test_sampling_follows_the_softmax():
  logits = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
  draws = replaced_token_detection.sample_tokens(jnp.broadcast_to(logits, (4, 5000, 4)), jax.random.key(0), 1.0)
  np.testing.assert_allclose(np.bincount(np.asarray(draws).ravel(), minlength=4) / 20000, [0.1, 0.2, 0.3, 0.4],
                             atol=0.012)
  cold = replaced_token_detection.sample_tokens(jnp.broadcast_to(logits, (1, 2000, 4)), jax.random.key(0), 0.01)
  assert (np.asarray(cold) == 3).all()


def test_forward_loss_and_metrics(setup, generator):
  objective, model, params, batch, logits = setup["objective"], *(generator[k] for k in ("model", "params", "batch",
                                                                                         "logits"))
  rngs = {"dropout": jax.random.key(7)}  # the model is deterministic: only the sampling key is used
  forward = lambda p, b, r: objective.forward(model, p, b, r)
  sums, metrics = _compiled(forward, params, batch, rngs)(params, batch, rngs)
  counts = objective.counts(batch)
  _, fake, labels = replaced_token_detection.corrupt(batch, logits, replaced_token_detection.step_keys(rngs)[2], 1.0)
  assert float(metrics["replaced"]) == float(labels.sum())
  discriminate = lambda p, ids, b: model.apply({"params": p}, ids, b["token_type_ids"], b["attention_mask"],
                                               method="discriminate")
  disc = _compiled(discriminate, params, fake, batch)(params, fake, batch)
  mask = batch["attention_mask"]
  bce = jnp.sum((jnp.logaddexp(0.0, disc) - labels * disc) * mask)
  assert float(sums["disc"]) == pytest.approx(50.0 * float(bce), rel=1e-5)
  result = objective.summarize(sums, metrics, counts)
  assert result["disc_loss"] == pytest.approx(float(bce) / float(mask.sum()), rel=1e-5)
  assert result["loss"] == pytest.approx(result["mlm_loss"] + 50.0 * result["disc_loss"], rel=1e-5)
  assert result["replaced_share"] == pytest.approx(float(labels.sum()) / float(mask.sum()))
  assert 0.0 <= result["disc_precision"] <= 1.0 and 0.0 <= result["disc_recall"] <= 1.0

