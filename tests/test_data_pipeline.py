"""The training and eval streams: same seed same batches, exact resume from a saved iterator, a new mask for
each reading of a document, fixed eval batches, and per-process shards."""

from data_helpers import originals, prepared_workdir, tiny_config
import numpy as np
import pytest

from bert_jax.data import pipeline
from bert_jax.data.tf_cpu import tf
from bert_jax.objectives import get_objective


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return prepared_workdir(tmp_path_factory, tiny_config("bert_tiny", "data.shards=4"))


def same(a: dict, b: dict) -> bool:
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_same_seed_same_batches_and_exact_resume(workdir, tmp_path):
  config = tiny_config("bert_tiny", "data.shards=4")
  iterator = iter(pipeline.train_dataset(config, get_objective(config), workdir))
  first = [next(iterator) for _ in range(3)]
  saved = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "iterator"))
  expected = [next(iterator) for _ in range(3)]
  again = iter(pipeline.train_dataset(config, get_objective(config), workdir))
  for want in first:  # a fresh stream from the same config gives the same batches
    assert same({k: v.numpy() for k, v in want.items()}, {k: v.numpy() for k, v in next(again).items()})
  tf.train.Checkpoint(iterator=again).read(saved).assert_consumed()
  for want in expected:  # and a restored one continues exactly where the saved one was
    assert same({k: v.numpy() for k, v in want.items()}, {k: v.numpy() for k, v in next(again).items()})


def test_each_reading_of_a_document_gets_new_masks(workdir):
  config = tiny_config("bert_tiny", "objective.sentence_task=none", "objective.short_seq_prob=0.0",
                       "model.sentence_head=none")
  tokenizer = pipeline.load_tokenizer(config, workdir)
  sentence = tokenizer.encode(["Assignment statements are used to (re)bind names to values and to modify "
                               "attributes or items of mutable objects."])[0]
  document = {"token_ids": tf.constant(sentence, tf.int32), "sentence_lengths": tf.constant([len(sentence)])}
  examples = get_objective(config).dataset(tf.data.Dataset.from_tensors(document).repeat(3), tokenizer, 0, True)
  rows = next(examples.batch(3).as_numpy_iterator())
  assert (originals(rows) == originals(rows)[:1]).all()  # the same sequence three times ...
  assert len({tuple(p) for p in rows["masked_positions"]}) == 3  # ... masked anew each time
  assert (rows["masked_weights"].sum(1) == round(0.15 * len(sentence))).all()


def test_eval_batches_are_fixed(workdir):
  config = tiny_config("bert_tiny", "data.shards=4", "eval.batches=3")
  batches = list(pipeline.eval_dataset(config, get_objective(config), workdir).as_numpy_iterator())
  assert len(batches) == 3 and batches[0]["input_ids"].shape == (16, 64)
  again = list(pipeline.eval_dataset(config, get_objective(config), workdir).as_numpy_iterator())
  assert all(same(a, b) for a, b in zip(batches, again, strict=True))
  halves = list(pipeline.eval_dataset(config, get_objective(config), workdir, process_index=1,
                                      process_count=2).as_numpy_iterator())
  assert len(halves) == 3 and halves[0]["input_ids"].shape == (8, 64)


@pytest.mark.parametrize("shards", [4, 1])
def test_processes_read_disjoint_documents_that_cover_the_split(tmp_path_factory, workdir, shards):
  """By file when there are enough files, otherwise every second document of the same order."""
  config = tiny_config("bert_tiny", f"data.shards={shards}")
  if shards != 4:
    workdir = prepared_workdir(tmp_path_factory, config)
  seen = [[tuple(d["token_ids"]) for d in pipeline.documents(config, workdir, "train", i, 2).as_numpy_iterator()]
          for i in range(2)]
  everything = [tuple(d["token_ids"]) for d in pipeline.documents(config, workdir, "train").as_numpy_iterator()]
  assert sorted(seen[0] + seen[1]) == sorted(everything)  # as multisets: no document read twice, none left out
  assert abs(len(seen[0]) - len(seen[1])) <= len(everything) // 4
