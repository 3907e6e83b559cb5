"""The permutation LM: masks on hand-checkable cases, the tf.data examples, the loss, and bad settings."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
from objective_helpers import CLS, EOD, SEP, FakeTokenizer, stream_documents
import pytest

from bert_jax import config as config_lib, models, params as params_lib
from bert_jax.errors import UserError
from bert_jax.models import xlnet
from bert_jax.objectives import get_objective, training_loss
from bert_jax.objectives.permutation_lm import permutation_mask


def test_mask_by_hand():
  # Targets at 1, 3, 4 predicted in the order 4, 1, 3; positions 0, 2, 5 are context.
  rank = np.array([[0, 2, 0, 3, 1, 0]])
  target = np.array([[0, 1, 0, 1, 1, 0]])
  blocked = np.asarray(permutation_mask(jnp.asarray(rank), jnp.asarray(target)))[0].astype(int)
  expected = np.array([  # row i, column j: 1 = i may not see j
      [0, 1, 0, 1, 1, 0],  # context sees context only
      [0, 1, 0, 1, 0, 0],  # second target: context and position 4, not itself
      [0, 1, 0, 1, 1, 0],
      [0, 0, 0, 1, 0, 0],  # last target: everything but itself
      [0, 1, 0, 1, 1, 0],  # first target: context only
      [0, 1, 0, 1, 1, 0]])
  np.testing.assert_array_equal(blocked, expected)


def test_mask_by_hand_with_a_reuse_part():
  # Part 0 = positions 0..2 (target 1), part 1 = positions 3..5 (target 5); ranks offset by L + 1 = 7.
  rank = np.array([[0, 1, 0, 7, 7, 8]])
  target = np.array([[0, 1, 0, 0, 0, 1]])
  blocked = np.asarray(permutation_mask(jnp.asarray(rank), jnp.asarray(target)))[0].astype(int)
  expected = np.array([
      [0, 1, 0, 1, 1, 1],  # the reuse part never sees the rest
      [0, 1, 0, 1, 1, 1],
      [0, 1, 0, 1, 1, 1],
      [0, 0, 0, 0, 0, 1],  # the rest sees all of the reuse part, targets included
      [0, 0, 0, 0, 0, 1],
      [0, 0, 0, 0, 0, 1]])
  np.testing.assert_array_equal(blocked, expected)


def test_mask_by_hand_with_sep_and_cls():
  # A [SEP] B [SEP] [CLS] as a b SEP c SEP CLS; targets b and c; the order: c, the first SEP, b, CLS, the last SEP.
  rank = np.array([[0, 3, 2, 1, 5, 4]])
  target = np.array([[0, 1, 0, 1, 0, 0]])
  blocked = np.asarray(permutation_mask(jnp.asarray(rank), jnp.asarray(target)))[0].astype(int)
  expected = np.array([
      [0, 1, 1, 1, 1, 1],  # context sees neither targets nor [SEP]/[CLS]
      [0, 1, 0, 0, 1, 1],  # b: context, c and the first SEP (before it), not itself
      [0, 1, 0, 0, 1, 1],  # the first SEP: context, c and itself
      [0, 1, 1, 1, 1, 1],  # c, first in the order: context only
      [0, 0, 0, 0, 0, 0],  # the last SEP, last in the order: everything, itself included
      [0, 0, 0, 0, 1, 0]])  # CLS: all but the last SEP
  np.testing.assert_array_equal(blocked, expected)


SHORT = ["model.dropout=0.0", "model.reuse_len=0", "model.mem_len=0", "data.seq_len=16", "objective.perm_size=4",
         "objective.num_predict=4"]


@functools.cache
def tiny_model():
  config = config_lib.load_config("xlnet_tiny", SHORT)
  return config, models.build_model(config.model), init_params(config, scale=10.0)


def init_params(config, scale=1.0):
  """Random parameters of the model's shapes (numpy: compiling the initialisers would take longer)."""
  abstract = params_lib.abstract_params(models.build_model(config.model),
                                        xlnet.example_inputs(models.make_config(config.model)))
  rng = np.random.default_rng(0)
  return flax.traverse_util.unflatten_dict({
      path: (1.0 if path[-1] == "scale" else 0.0) + rng.normal(0.0, 0.02 * scale, x.shape).astype(np.float32)
      for path, x in flax.traverse_util.flatten_dict(abstract).items()})


def test_two_stream_model_respects_the_order():
  """Perturbing a token moves exactly the predictions that may see it."""
  config, model, params = tiny_model()
  objective = get_objective(config)
  # Targets 4, 11, then the [SEP] at 15 (in the order, not predicted), then targets 1, 8.
  rank = np.array([0, 4, 0, 0, 1, 0, 0, 0, 5, 0, 0, 2, 0, 0, 0, 3], np.int32)
  target = (rank > 0).astype(np.int32)
  target[15] = 0
  positions = np.flatnonzero(target).astype(np.int32)  # 1, 4, 8, 11
  ids = np.random.default_rng(0).integers(10, 4096, 16).astype(np.int32)
  ids[15] = SEP
  batch = {"perm_rank": rank[None], "is_target": target[None], "target_positions": positions[None],
           "token_type_ids": np.zeros((1, 16), np.int32), "reversed": np.zeros(1, np.int32)}

  @jax.jit
  def apply(params, input_ids):
    mask = permutation_mask(batch["perm_rank"], batch["is_target"])
    return model.apply({"params": params}, input_ids, batch["token_type_ids"], None, mask,
                       batch["target_positions"], None, batch["reversed"])["logits"][0]

  logits = functools.partial(apply, params)
  base = logits(ids[None])
  order = {int(p): int(rank[p]) for p in positions}

  def moved(position):
    changed = ids.copy()
    changed[position] = 11 if ids[position] != 11 else 12
    return np.abs(np.asarray(logits(changed[None]) - base)).max(axis=-1) > 1e-4

  for p in positions:  # a target's token reaches the targets after it in the order, never its own prediction
    np.testing.assert_array_equal(moved(p), [order[q] > order[p] for q in positions], err_msg=f"target {p}")
  for p in (0, 7, 14):  # context tokens reach every prediction
    assert moved(p).all()
  np.testing.assert_array_equal(moved(15), [order[q] > 3 for q in positions])  # the [SEP]: those after it only
  assert objective.feature_spec(2)["perm_rank"] == ((2, 16), np.int32)


def make_examples(overrides=(), seed=7, count=300):
  """Forward examples only (the recipe's bi_data off) unless the overrides turn it back on."""
  config = config_lib.load_config("xlnet_tiny", ["objective.bi_data=False", *overrides])
  objective = get_objective(config)
  docs, documents = stream_documents()
  examples = objective.dataset(documents, FakeTokenizer(), seed, True)
  return config, objective, docs, list(examples.take(count).as_numpy_iterator())


@pytest.fixture(scope="module")
def tiny_examples():
  return make_examples()


def test_examples_have_xlnet_layout(tiny_examples):
  config, objective, docs, examples = tiny_examples
  stream = np.concatenate([np.append(d, EOD) for d in docs])
  L, R, P = 64, 32, 10
  spec = objective.feature_spec(1)
  continued = 0
  for index, e in enumerate(examples):
    for name, (shape, dtype) in spec.items():
      assert e[name].shape == shape[1:] and e[name].dtype == dtype, name
    ids, types = e["input_ids"], e["token_type_ids"]
    seps = np.flatnonzero(ids == SEP)
    a_end = seps[0]
    assert list(seps) == [a_end, L - 2] and ids[-1] == CLS and R < a_end < L - 3
    np.testing.assert_array_equal(types, [0] * (a_end + 1) + [1] * (L - 2 - a_end) + [2])
    chunk = stream[index * (L - 3):(index + 1) * (L - 3)]
    np.testing.assert_array_equal(ids[:a_end], chunk[:a_end])  # the reuse part and A are the stream in order
    continued += np.array_equal(ids[a_end + 1:L - 2], chunk[a_end:])
    positions = e["target_positions"]
    assert e["target_weights"].sum() == P and e["is_target"].sum() == P
    assert np.all(np.diff(positions) > 0) and np.all(ids[positions] >= 10)  # no special token is predicted
    np.testing.assert_array_equal(np.flatnonzero(e["is_target"]), positions)
    np.testing.assert_array_equal(e["target_ids"], ids[positions])
    assert (positions < R).sum() == P - P // 2  # the release's num_predict_0 (the reuse part's) is the larger
  assert 0.38 < continued / len(examples) < 0.62  # random_b_prob = 0.5


def test_factorization_order_is_one_block_permutation_per_part(tiny_examples):
  """The targets and the [SEP]s and [CLS] (XLNet's functional tokens) are placed by one block permutation; the
  rest of a part is context, ahead of all of them."""
  _, _, _, examples = tiny_examples
  L, R, perm = 64, 32, 16
  first_offsets = []
  for e in examples:
    rank, target = e["perm_rank"], e["is_target"].astype(bool)
    ordered = target | np.isin(e["input_ids"], [SEP, CLS])
    assert ordered[R:].sum() == target[R:].sum() + 3
    for part, (begin, end) in enumerate([(0, R), (R, L)]):
      base = part * (L + 1)
      np.testing.assert_array_equal(rank[begin:end][~ordered[begin:end]], base)
      places = rank[begin:end][ordered[begin:end]] - base - 1
      local = np.flatnonzero(ordered[begin:end])
      assert len(set(places)) == len(places)
      offsets = {}  # position offset within its block -> place offset: the same in every block
      for position, place in zip(local, places):
        assert place // perm == position // perm
        assert offsets.setdefault(position % perm, place % perm) == place % perm
    first = rank[:R] - 1
    first_offsets.append(np.argsort(np.where(target[:R], first, 10 ** 6))[0] % perm)
  assert len(set(first_offsets)) > perm // 2  # permutations differ from example to example


def test_targets_come_in_spans(tiny_examples):
  _, _, _, examples = tiny_examples
  runs = []
  for e in examples:
    t = np.concatenate([[0], e["is_target"], [0]])
    edges = np.flatnonzero(np.diff(t))
    runs += list(edges[1::2] - edges[::2])
  runs = np.array(runs)
  # n ~ 1/n on 1..5 (mean 2.19), cut short by the 5 targets a part takes and by the [SEP]s, sometimes merged.
  assert 1.6 < runs.mean() < 2.6 and (runs == 1).mean() < 0.6 and runs.max() == 5


def test_examples_are_reproducible_and_seeded():
  *_, a = make_examples(seed=3, count=20)
  *_, b = make_examples(seed=3, count=20)
  *_, c = make_examples(seed=4, count=20)
  for x, y in zip(a, b):
    for name in x:
      np.testing.assert_array_equal(x[name], y[name])
  assert any(not np.array_equal(x["perm_rank"], z["perm_rank"]) for x, z in zip(a, c))


def test_bi_data_adds_the_reversed_example():
  *_, docs, examples = make_examples(["objective.bi_data=True", "model.reuse_len=0", "model.mem_len=0"], count=40)
  stream = np.concatenate([np.append(d, EOD) for d in docs])
  for i in range(0, 40, 2):
    forward, backward = examples[i], examples[i + 1]
    assert forward["reversed"] == 0 and backward["reversed"] == 1
    chunk = stream[i // 2 * 61:(i // 2 + 1) * 61]
    a_end = np.flatnonzero(backward["input_ids"] == SEP)[0]
    np.testing.assert_array_equal(backward["input_ids"][:a_end], chunk[::-1][:a_end])
    assert backward["is_target"].sum() == 10


def test_forward_loss_counts_and_summary():
  config = config_lib.load_config("xlnet_tiny", SHORT + ["objective.bi_data=True"])
  objective = get_objective(config)
  batch = objective.synthetic_batch(4, np.random.default_rng(0))
  for name, (shape, dtype) in objective.feature_spec(4).items():
    assert batch[name].shape == shape and batch[name].dtype == dtype, name
  model = models.build_model(config.model)
  params = init_params(config)
  batch["target_weights"][0, -3:] = 0.0  # 4 x 4 targets, 3 of them padding

  @jax.jit
  def forward_and_logits(params, batch):
    mask = permutation_mask(batch["perm_rank"], batch["is_target"])
    logits = model.apply({"params": params}, batch["input_ids"], batch["token_type_ids"], None, mask,
                         batch["target_positions"], None, batch["reversed"])["logits"]
    return objective.forward(model, params, batch), logits

  (sums, metrics), logits = forward_and_logits(params, batch)
  counts = objective.counts(batch)
  assert float(counts["plm"]) == 13.0
  log_probs = jax.nn.log_softmax(logits, -1)
  nll = -np.take_along_axis(np.asarray(log_probs), batch["target_ids"][..., None], -1)[..., 0]
  np.testing.assert_allclose(sums["plm"], (nll * batch["target_weights"]).sum(), rtol=1e-5)
  summary = objective.summarize(sums, metrics, counts)
  assert abs(summary["plm_loss"] - np.log(4096)) < 0.5  # random init predicts about uniformly
  assert summary["loss"] == pytest.approx(float(training_loss(sums, counts)))
  assert 0.0 <= summary["plm_accuracy"] <= 1.0


@pytest.mark.parametrize("overrides,message", [
    (["objective.num_predict=59"], "objective.num_predict=59 is more than data.seq_len=64 allows; use 1 to 58"),
    (["objective.num_predict=62", "model.reuse_len=0", "model.mem_len=0"], "use 1 to 61"),
    (["objective.perm_size=24"], "objective.perm_size=24 must divide data.seq_len=64"),
    (["model.reuse_len=70"], "model.reuse_len=70 leaves no room"),
    (["objective.mask_alpha=1"], "mask_alpha // objective.mask_beta must be >= 2"),
])
def test_bad_objective_settings(overrides, message):
  with pytest.raises(UserError, match=message.replace("(", r"\(")):
    get_objective(config_lib.load_config("xlnet_tiny", overrides))


def test_bad_model_sizes():
  with pytest.raises(UserError, match="model.hidden_size=64 is not divisible by model.num_heads=3"):
    config_lib.load_config("xlnet_tiny", ["model.num_heads=3"])
  with pytest.raises(UserError, match="unknown model keys for the xlnet family: max_position"):
    models.validate_model_config(dict(config_lib.load_config("xlnet_tiny").model, max_position=5))


@pytest.mark.parametrize("name,overrides,total,encoder", [
    ("xlnet_base", [], 116_750_336, 116_718_336),
    ("xlnet_large", ["model.scan_layers=True"], 360_300_800, 360_268_800),  # scanned: one layer to trace
])
def test_exact_counts(name, overrides, total, encoder):
  counts = params_lib.count_model(config_lib.load_config(name, overrides).model)
  assert (counts["total"], counts["encoder"]) == (total, encoder)
