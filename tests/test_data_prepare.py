"""Prepared data: TFRecords that round-trip the tokenized documents, a no-op re-run, no half-written output
after an interruption or an error, and the `prepare` / `tokenizer` commands."""

import threading

from data_helpers import tiny_config, write_corpus
import pytest

from bert_jax import cli
from bert_jax.data import pipeline, prepare, tokenizer as tokenizer_lib
from bert_jax.data.sources import Source
from bert_jax.errors import UserError
from bert_jax.objectives import get_objective


def corpus_config(path, *overrides):
  return tiny_config("bert_tiny", f"data.source={path}", "model.vocab_size=60", "data.shards=3",
                     "data.eval_documents=4", *overrides)


def test_round_trip_and_no_op_rerun(tmp_path):
  config = corpus_config(write_corpus(tmp_path / "corpus.txt", 40))
  metadata = pipeline.prepare_if_needed(config, tmp_path / "w")
  tokenizer = pipeline.load_tokenizer(config, tmp_path / "w")
  expected = [tokenizer.encode(document) for document in Source(config.data).documents()]
  splits = metadata["splits"]
  assert [s["documents"] for s in splits["eval"]] == [2, 1, 1] and [s["documents"] for s in splits["train"]] == [12] * 3
  for split, wanted in (("eval", expected[:4]), ("train", expected[4:])):
    found = list(pipeline.documents(config, tmp_path / "w", split).as_numpy_iterator())
    assert [d["token_ids"].tolist() for d in found] == [[t for s in doc for t in s] for doc in wanted]
    assert [d["sentence_lengths"].tolist() for d in found] == [[len(s) for s in doc] for doc in wanted]
    assert sum(s["tokens"] for s in splits[split]) == sum(len(t) for doc in wanted for t in doc)
  files = sorted((tmp_path / "w" / "data").iterdir())
  assert [f.name for f in files] == ["eval-00000-of-00003.tfrecord", "eval-00001-of-00003.tfrecord",
                                     "eval-00002-of-00003.tfrecord", "metadata.json",
                                     "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
                                     "train-00002-of-00003.tfrecord"]
  stamps = [f.stat().st_mtime_ns for f in files]
  assert pipeline.prepare_if_needed(config, tmp_path / "w") == metadata
  assert [f.stat().st_mtime_ns for f in files] == stamps
  with pytest.raises(UserError, match=r"other settings \(eval_documents differ\)"):
    pipeline.prepare_if_needed(corpus_config(tmp_path / "corpus.txt", "data.eval_documents=5"), tmp_path / "w")
  with pytest.raises(UserError, match=r"tokenizer trained with other settings \(vocab_size differ\)"):
    pipeline.prepare_if_needed(corpus_config(tmp_path / "corpus.txt", "model.vocab_size=58"), tmp_path / "w")


class InterruptedSource(Source):
  def documents(self):
    for index, document in enumerate(super().documents()):
      if index == 30:
        raise KeyboardInterrupt
      yield document


def test_interrupted_or_failed_runs_leave_nothing_that_looks_complete(tmp_path):
  config = corpus_config(write_corpus(tmp_path / "corpus.txt", 40))
  tokenizer = tokenizer_lib.train_for_config(config, Source(config.data), tmp_path / "tok.model")
  out = tmp_path / "data"
  with pytest.raises(KeyboardInterrupt):
    prepare.prepare(config, InterruptedSource(config.data), tokenizer, out)
  assert list(out.iterdir()) == []
  assert prepare.prepare(config, Source(config.data), tokenizer, out)["splits"]["train"][0]["documents"] == 12

  (tmp_path / "blank.txt").write_text("\n \n\n")
  blank = corpus_config(tmp_path / "blank.txt")
  with pytest.raises(UserError, match="corpus is empty"):
    prepare.prepare(blank, Source(blank.data), tokenizer, tmp_path / "blank")
  assert list((tmp_path / "blank").iterdir()) == []
  with pytest.raises(UserError, match="corpus is empty"):
    pipeline.prepare_if_needed(blank, tmp_path / "w_blank")
  assert not (tmp_path / "w_blank" / "tokenizer" / "spm.model").exists()
  held = corpus_config(tmp_path / "corpus.txt", "data.eval_documents=40")
  with pytest.raises(UserError, match="all 40 documents are held out"):
    prepare.prepare(held, Source(held.data), tokenizer, tmp_path / "held")
  assert list((tmp_path / "held").iterdir()) == []


def test_corpus_too_small_for_a_batch(tmp_path):
  config = corpus_config(write_corpus(tmp_path / "small.txt", 9), "data.eval_documents=1", "train.batch_size=64")
  pipeline.prepare_if_needed(config, tmp_path / "w")
  with pytest.raises(UserError, match=r"train split is too small: .* fewer than one batch of 64"):
    pipeline.train_dataset(config, get_objective(config), tmp_path / "w")
  with pytest.raises(UserError, match=r"eval split is too small"):
    pipeline.eval_dataset(config, get_objective(config), tmp_path / "w")


def test_commands(tmp_path, capsys):
  corpus = write_corpus(tmp_path / "corpus.txt", 30)
  assert cli.main(["tokenizer", "--config", "bert_tiny", "--source", str(corpus), "--output",
                   str(tmp_path / "t.model"), "--vocab-size", "60", "--model-type", "bpe", "--extra-ids", "10"]) == 0
  assert "50 pieces and 10 sentinels; [PAD]=0 </s>=1 [CLS]=3 [SEP]=4 [MASK]=5" in capsys.readouterr().out
  assert cli.main(["tokenizer", "--config", "bert_tiny", "--output", str(tmp_path / "t.model")]) == 2
  assert "exists; pass --force" in capsys.readouterr().err
  assert cli.main(["prepare", "--config", "bert_tiny", "--workdir", str(tmp_path / "w"), "--source", str(corpus),
                   "--config.model.vocab_size=60", "--config.data.eval_documents=3"]) == 0
  assert "train: 27 documents" in capsys.readouterr().out
  assert cli.main(["prepare", "--config", "bert_tiny", "--workdir", str(tmp_path / "w2"), "--source",
                   str(tmp_path / "missing.txt")]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "missing.txt' matches no files" in err
  assert not (tmp_path / "w2").exists()


def test_other_processes_wait_for_process_zero(tmp_path, monkeypatch):
  """Process 1 of 2 waits for process 0's tokenizer, writes its share and waits for the metadata, which process 0
  writes once both shares are in; the shards are those one process writes."""
  config = corpus_config(write_corpus(tmp_path / "corpus.txt", 40), f"data.prepared_dir={tmp_path / 'shared'}")
  monkeypatch.setattr(prepare, "WAIT_SECONDS", 0.05)
  found = []
  waiter = threading.Thread(target=lambda: found.append(pipeline.prepare_if_needed(config, tmp_path / "w", 1, 2)))
  waiter.start()
  waiter.join(0.5)
  assert waiter.is_alive() and not (tmp_path / "w").exists()  # waiting, writing nothing
  written = pipeline.prepare_if_needed(config, tmp_path / "w", 0, 2)
  waiter.join(10)
  assert found == [written]
  alone = corpus_config(tmp_path / "corpus.txt", f"data.prepared_dir={tmp_path / 'alone'}")
  assert pipeline.prepare_if_needed(alone, tmp_path / "w", 0, 1) == written
  assert sorted(p.name for p in tmp_path.iterdir()) == ["alone", "corpus.txt", "shared", "w"]  # no staging left
  for path in (tmp_path / "alone").iterdir():
    assert path.read_bytes() == (tmp_path / "shared" / path.name).read_bytes(), path.name
