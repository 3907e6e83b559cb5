"""Preparation split by process: `bert-jax prepare --process-index i --process-count 2`, run as two real processes
at once over a corpus of as many files as shards (each process reads its files), writes the same files (byte for
byte) and the same metadata as one process. (tests/test_data_prepare.py: the same for one file, split by
document.)"""

import os
import subprocess
import sys

from data_helpers import tiny_config, write_corpus
import pytest

from bert_jax import cli
from bert_jax.data import pipeline, prepare
from bert_jax.data.sources import Source
from bert_jax.errors import UserError

OVERRIDES = ["model.vocab_size=60", "data.shards=3", "data.eval_documents=0", "data.eval_tokens=110"]


def corpus(tmp_path):
  (tmp_path / "corpus").mkdir()
  for seed in range(3):
    write_corpus(tmp_path / "corpus" / f"part-{seed}.txt", 15, seed)
  return tmp_path / "corpus"


def prepare_argv(workdir, source, output, *extra):
  return ["prepare", "--config", "bert_tiny", "--workdir", str(workdir), "--source", str(source), "--output",
          str(output), *[f"--config.{o}" for o in OVERRIDES], *extra]


@pytest.mark.slow
def test_two_processes_prepare_what_one_does(tmp_path, capsys):
  source = corpus(tmp_path)
  other = subprocess.Popen([sys.executable, "-m", "bert_jax.cli", *prepare_argv(
      tmp_path / "w", source, tmp_path / "two", "--process-index", "1", "--process-count", "2")],
      env={**os.environ, "JAX_PLATFORMS": "cpu"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  assert cli.main(prepare_argv(tmp_path / "w", source, tmp_path / "two", "--process-index", "0",
                               "--process-count", "2")) == 0  # this process is process 0
  assert "train: " in capsys.readouterr().out
  out, err = other.communicate(timeout=120)
  assert other.returncode == 0, err[-2000:]
  assert "process 1 of 2: share written" in out

  assert cli.main(prepare_argv(tmp_path / "w", source, tmp_path / "one")) == 0
  one, two = sorted((tmp_path / "one").iterdir()), sorted((tmp_path / "two").iterdir())
  assert [p.name for p in one] == [p.name for p in two] == [
      *[f"eval-0000{i}-of-00003.tfrecord" for i in range(3)], "metadata.json",
      *[f"train-0000{i}-of-00003.tfrecord" for i in range(3)]]
  for a, b in zip(one, two):
    assert a.read_bytes() == b.read_bytes(), a.name
  assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "one", "two", "w"]  # the staging directory is gone

  # the head (110 tokens) held out round-robin over the eval shards; with as many files as shards, the rest of
  # file k is training shard k
  config = tiny_config("bert_tiny", f"data.source={source}", f"data.prepared_dir={tmp_path / 'two'}", *OVERRIDES)
  tokenizer, source = pipeline.load_tokenizer(config, tmp_path / "w"), Source(config.data)
  held_out, train, tokens, split = [], [[], [], []], 0, False
  for file in range(3):
    for document in source.file_documents(file):
      sentences, held = [ids for ids in tokenizer.encode(document) if ids], 0
      while held < len(sentences) and tokens < 110:
        tokens += len(sentences[held])
        held += 1
      held_out += [sentences[:held]] if held else []
      train[file] += [sentences[held:]] if held < len(sentences) else []
      split |= 0 < held < len(sentences)
  assert split and len(held_out) > 1  # the head ends inside a document, whose rest is trained on
  for name, shards in (("eval", [held_out[i::3] for i in range(3)]), ("train", train)):
    for shard, documents in enumerate(shards):  # process i of 3 reads shard i
      found = pipeline.documents(config, tmp_path / "w", name, shard, 3).as_numpy_iterator()
      assert [d["token_ids"].tolist() for d in found] == [[t for ids in d for t in ids] for d in documents]


def test_a_restarted_process_keeps_its_finished_share(tmp_path, monkeypatch):
  """A share whose manifest and files are complete for these settings is not written again; one left by other
  settings is."""
  config = tiny_config("bert_tiny", f"data.source={corpus(tmp_path)}", f"data.prepared_dir={tmp_path / 'data'}",
                       *OVERRIDES)
  with pytest.raises(UserError, match="process index 2 is not one of the 2 processes"):
    pipeline.prepare_if_needed(config, tmp_path / "w", 2, 2)
  pipeline.prepare_if_needed(config, tmp_path / "w", 0, 1)  # the tokenizer
  (tmp_path / "data").rename(tmp_path / "one")
  assert pipeline.prepare_if_needed(config, tmp_path / "w", 1, 2, wait=False) is None
  staging = tmp_path / ".data.shares-of-2"
  assert sorted(p.name for p in staging.iterdir()) == [prepare.share_name(1, 2), "train-00001-of-00003.tfrecord"]
  stamp = (staging / "train-00001-of-00003.tfrecord").stat().st_mtime_ns
  assert pipeline.prepare_if_needed(config, tmp_path / "w", 1, 2, wait=False) is None
  assert (staging / "train-00001-of-00003.tfrecord").stat().st_mtime_ns == stamp
  other = tiny_config("bert_tiny", f"data.source={tmp_path / 'corpus'}", f"data.prepared_dir={tmp_path / 'data'}",
                      *OVERRIDES, "data.eval_tokens=100")
  assert pipeline.prepare_if_needed(other, tmp_path / "w", 1, 2, wait=False) is None
  assert (staging / "train-00001-of-00003.tfrecord").stat().st_mtime_ns != stamp
  metadata = pipeline.prepare_if_needed(other, tmp_path / "w", 0, 2)
  assert metadata["settings"]["eval_tokens"] == 100 and not staging.exists()
  assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
      *[f"eval-0000{i}-of-00003.tfrecord" for i in range(3)], "metadata.json",
      *[f"train-0000{i}-of-00003.tfrecord" for i in range(3)]]
