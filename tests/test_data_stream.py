"""data.stream: the documents tokenized on the fly are the prepared ones (demo corpus, and a corpus of several files
whose eval head ends inside a document), whatever the process count; a restored training iterator continues exactly,
also past the end of a pass; `bert-jax train` resumed from a checkpoint logs the losses of an uninterrupted run; and
what streaming cannot serve fails clearly."""

import collections
import shutil

from checkpoint_helpers import comparable, demo_overrides, records
from cli_helpers import error_line
import numpy as np
import pytest

from bert_jax import cli, config as config_lib
from bert_jax.data import pipeline, stream, tokenizer as tokenizer_lib
from bert_jax.data.sources import Source
from bert_jax.data.tf_cpu import tf
from bert_jax.errors import UserError
from bert_jax.objectives import get_objective


def tokenizer_of(config):
  return tokenizer_lib.load(config.data.tokenizer, config.data.extra_ids)


def key(document: dict) -> tuple:
  return tuple(tuple(document[name].numpy()) for name in sorted(document))


def prepared(config, workdir) -> tuple[list, collections.Counter]:
  pipeline.prepare_if_needed(config, workdir)
  return ([key(d) for d in pipeline.documents(config, workdir, "eval")],
          collections.Counter(key(d) for d in pipeline.documents(config, workdir, "train")))


def streamed(config, processes: int) -> tuple[list, collections.Counter]:
  """Every process's eval documents, and one pass of every process's training documents."""
  source, tokenizer = Source(config.data), tokenizer_of(config)
  start = stream.head(config, source, tokenizer)[1]
  evaluated, trained = [], collections.Counter()
  for i in range(processes):
    if processes <= 2:  # the eval heads here are of 2 or more documents
      evaluated += [key(d) for d in stream.eval_documents(config, source, tokenizer, i, processes)]
    one_pass = sum(1 for _ in stream.share(source, start, i, processes))  # raw documents; none tokenizes to nothing
    trained.update(key(d) for d in stream.train_documents(config, source, tokenizer, i, processes, 0).take(one_pass))
  return evaluated, trained


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  return config_lib.load_config("bert_tiny", demo_overrides(tmp_path_factory))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, demo) -> str:
  """Five files of demo documents, in BERT's layout (a sentence a line, a blank line between documents)."""
  root = tmp_path_factory.mktemp("corpus")
  documents = list(Source(demo.data).documents())[:40]
  for f in range(5):
    (root / f"part-{f}.txt").write_text("".join("\n".join(d) + "\n\n" for d in documents[f::5]))
  return str(root)


def test_the_demo_stream_holds_the_prepared_documents(demo, tmp_path):
  config = config_lib.load_config("bert_tiny", [*demo_overrides_of(demo), "data.shards=4", "data.eval_tokens=3000",
                                                f"data.prepared_dir={tmp_path / 'data'}"])
  want_eval, want_train = prepared(config, tmp_path)
  for processes in (1, 2):
    got_eval, got_train = streamed(config, processes)
    assert sorted(got_eval) == sorted(want_eval) and (processes > 1 or got_eval == want_eval)
    assert got_train == want_train


@pytest.mark.parametrize("shards", [2, 8])  # prepared by file, and by document
def test_a_stream_of_files_holds_the_prepared_documents(demo, corpus, tmp_path, shards):
  config = config_lib.load_config("bert_tiny", [*demo_overrides_of(demo), f"data.source={corpus}",
                                                f"data.shards={shards}", "data.eval_tokens=500",
                                                f"data.prepared_dir={tmp_path / 'data'}"])
  source = Source(config.data)
  assert stream.head(config, source, tokenizer_of(config))[1][2] > 0  # ends inside a document
  want_eval, want_train = prepared(config, tmp_path)
  for processes in (1, 2, 7):  # files 0::2 and 1::2; documents 0::7 ... 6::7 (fewer files than processes)
    got_eval, got_train = streamed(config, processes)
    assert sorted(got_eval) == sorted(want_eval) or processes > 2
    assert got_train == want_train


def test_each_pass_reads_the_files_in_a_new_order(demo, corpus):
  config = config_lib.load_config("bert_tiny", [*demo_overrides_of(demo), f"data.source={corpus}",
                                                "data.eval_tokens=500"])
  source = Source(config.data)
  start = stream.head(config, source, tokenizer_of(config))[1]
  passes = [[tuple(d) for d, _ in stream.share(source, start, 0, 1, (0, number))] for number in range(3)]
  assert sorted(passes[0]) == sorted(passes[1]) == sorted(passes[2]) and len({tuple(p) for p in passes}) == 3


def demo_overrides_of(config) -> list[str]:
  return [f"data.tokenizer={config.data.tokenizer}", "model.vocab_size=1000", "data.seq_len=32"]


@pytest.mark.parametrize("name, seq_len", [("bert_tiny", 32), ("xlnet_tiny", 64)])  # XLNet's batches carry memory
def test_a_restored_stream_continues_exactly_past_the_end_of_a_pass(demo, corpus, tmp_path, monkeypatch, name, seq_len):
  monkeypatch.setattr(stream, "BLOCK_DOCUMENTS", 5)  # blocks that straddle the passes of 39 documents
  config = config_lib.load_config(name, [*demo_overrides_of(demo), f"data.source={corpus}", "data.stream=true",
                                         "data.shuffle_buffer=4", "train.batch_size=4", "data.eval_tokens=500",
                                         f"data.seq_len={seq_len}"])
  objective = get_objective(config)
  iterator = iter(pipeline.train_dataset(config, objective, tmp_path))
  for _ in range(40):  # 60 documents read: into the second pass over the 39
    next(iterator)
  saved = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "iterator"))
  expected = [next(iterator) for _ in range(60)]  # more than the shuffle buffers saved with the position hold
  again = iter(pipeline.train_dataset(config, objective, tmp_path))
  tf.train.Checkpoint(iterator=again).read(saved).assert_consumed()
  for want in expected:
    got = next(again)
    assert all(np.array_equal(want[k].numpy(), got[k].numpy()) for k in want)


def test_training_resumed_from_a_checkpoint_logs_the_losses_of_an_uninterrupted_run(tmp_path_factory, tmp_path, capsys,
                                                                                    monkeypatch):
  """The uninterrupted run of 64 steps, then the same command with its later checkpoints removed, as a run killed
  after its checkpoint 16 finds its workdir: it resumes from 16, drops the rows logged after it and logs 17..64 again.
  The 48 steps after 16 outlast the sequences in the buffers the checkpoint saved, so they read blocks it lacks."""
  monkeypatch.setattr(stream, "BLOCK_DOCUMENTS", 2)
  argv = ["train", "--config", "bert_tiny", "--workdir", str(tmp_path), *[f"--config.{o}" for o in [
      *demo_overrides(tmp_path_factory), "data.stream=true", "data.shuffle_buffer=1", "train.steps=64",
      "checkpoint.every=16", "checkpoint.keep=4"]]]
  assert cli.main(argv) == 0
  assert not (tmp_path / "data").exists()  # nothing prepared
  expected = [comparable(r) for r in records(tmp_path)]
  assert [r["step"] for r in expected] == list(range(1, 65))
  for step in (32, 48, 64):
    shutil.rmtree(tmp_path / "checkpoints" / str(step))
  capsys.readouterr()
  assert cli.main(argv) == 0
  assert "resuming from checkpoint 16 in" in capsys.readouterr().err
  assert [comparable(r) for r in records(tmp_path)] == expected


def test_what_streaming_cannot_serve_fails_clearly(demo, corpus, tmp_path, capsys):
  config = config_lib.load_config("bert_tiny", [*demo_overrides_of(demo), f"data.source={corpus}", "data.stream=true",
                                                "data.eval_tokens=100000"])
  with pytest.raises(UserError, match="documents are held out for evaluation"):
    stream.head(config, Source(config.data), tokenizer_of(config))
  config = config_lib.load_config("bert_tiny", [*demo_overrides_of(demo), f"data.source={corpus}", "data.stream=true",
                                                "data.eval_tokens=0"])
  with pytest.raises(UserError, match="set data.eval_tokens > 0"):
    stream.eval_documents(config, Source(config.data), tokenizer_of(config), 0, 1)
  one_file = tmp_path / "one.txt"
  one_file.write_text("First sentence of the only document.\nIts second sentence.\n")
  config = config_lib.load_config("bert_tiny", [*demo_overrides_of(demo), f"data.source={one_file}", "data.stream=true",
                                                "data.eval_tokens=0"])
  with pytest.raises(UserError, match="process 1 of 2 gets no training documents"):
    stream.train_documents(config, Source(config.data), tokenizer_of(config), 1, 2, 0)
  line = error_line(capsys, ["prepare", "--config", "bert_tiny", "--workdir", str(tmp_path / "w"),
                             "--config.data.stream=true"])
  assert "nothing to prepare" in line and not (tmp_path / "w").exists()
