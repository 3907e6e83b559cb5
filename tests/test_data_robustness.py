"""Failures of the data side stop loudly and lose nothing: concurrent prepares, damaged or changed files, counts
that add up across passes, tokenizers that do not fit the model, config mismatches that would give NaN, paths
relative to the current directory, and a full disk. Each bad input goes through the CLI and must give exit
status 2 (1 for a full disk), one `bert-jax: error:` line, no traceback, and leave the files as they were."""

import errno
import json
from pathlib import Path
import shutil
import subprocess
import sys

from cli_helpers import error_line, snapshot
import jax
import ml_collections
import numpy as np
import pytest

from bert_jax import cli, config as config_lib, models
from bert_jax.data import pipeline, prepare, tokenizer as tokenizer_lib
from bert_jax.data.sources import Source, absolute_spec
from bert_jax.errors import UserError
from bert_jax.files import storage
from bert_jax.objectives import get_objective

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon "
         "phi chi psi omega one two three four five six seven eight nine ten").split()
LOCAL_PATH = type(storage.path("/"))  # the file layer's class of local paths (bert_jax/files/storage.py)
SMALL = ["--config.model.vocab_size=60", "--config.data.shards=3", "--config.data.eval_documents=4"]


def write_corpus(path: Path, documents: int, seed: int = 0, bad_lines: int = 0) -> Path:
  rng = np.random.default_rng(seed)
  text = "\n\n".join("\n".join(" ".join(rng.choice(WORDS, rng.integers(3, 12))) + "."
                               for _ in range(rng.integers(1, 8))) for _ in range(documents))
  path.write_bytes(text.encode() + b"\n" + b"\n".join(b"caf\xe9 latin-1 line" for _ in range(bad_lines)) + b"\n")
  return path


def small_config(*overrides: str):
  return config_lib.load_config("bert_tiny", [o[len("--config."):] for o in SMALL] + list(overrides))


def leftovers(root: Path) -> list[str]:
  return [str(p) for p in root.rglob("*.partial")]


def prepare_argv(workdir: Path, source: Path, *overrides: str) -> list[str]:
  return ["prepare", "--config", "bert_tiny", "--workdir", str(workdir), "--source", str(source), *SMALL, *overrides]


TOGETHER = """import pathlib, sys, time
from bert_jax import cli
from bert_jax.data import pipeline  # TensorFlow and SentencePiece load before the start, so the two runs overlap
ready = pathlib.Path(sys.argv[1])
ready.touch()
while len(list(ready.parent.glob("ready-*"))) < 2:
  time.sleep(0.01)
sys.exit(cli.main(sys.argv[2:]))
"""


def test_two_prepares_at_once_publish_one_complete_directory(tmp_path):
  corpus = write_corpus(tmp_path / "corpus.txt", 40)
  workdir = tmp_path / "w"
  argv = prepare_argv(workdir, corpus)
  runs = [subprocess.Popen([sys.executable, "-c", TOGETHER, str(tmp_path / f"ready-{i}"), *argv],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  outputs = [run.communicate(timeout=300) for run in runs]
  for run, (_, err) in zip(runs, outputs):
    assert run.returncode == 0, err[-2000:]
  assert outputs[0][0] == outputs[1][0]  # the same counts, from the same published data
  assert sorted(p.name for p in workdir.iterdir()) == ["data", "tokenizer"] and not leftovers(workdir)
  config = small_config(f"data.source={corpus}")
  metadata = pipeline.prepare_if_needed(config, workdir)
  found = list(pipeline.documents(config, workdir, "train").as_numpy_iterator())
  assert len(found) == sum(s["documents"] for s in metadata["splits"]["train"]) == 36


def _look_too_early(monkeypatch) -> None:
  """This process's first looks at the tokenizer and the prepared data find nothing, as if it looked just before
  another run published them; it then trains and writes all of its own."""
  def first_finds(empty, real):
    calls = []

    def look(*args):
      calls.append(args)
      return empty if len(calls) == 1 else real(*args)
    return look

  monkeypatch.setattr(pipeline, "_trained_settings", first_finds(None, pipeline._trained_settings))
  monkeypatch.setattr(prepare, "read_metadata", first_finds(None, prepare.read_metadata))
  monkeypatch.setattr(LOCAL_PATH, "iterdir", first_finds(iter(()), LOCAL_PATH.iterdir))


def test_a_prepare_that_loses_the_race_keeps_the_winners_files(tmp_path, monkeypatch):
  source = f"data.source={write_corpus(tmp_path / 'corpus.txt', 40)}"
  winner = pipeline.prepare_if_needed(small_config(source), tmp_path / "w")
  before = snapshot(tmp_path)
  for changed, error in [([], None), (["data.eval_documents=5"], r"other settings \(eval_documents differ\)"),
                         (["model.vocab_size=58"], r"tokenizer trained with other settings \(vocab_size differ\)")]:
    config = small_config(source, *changed)
    with monkeypatch.context() as patched:
      _look_too_early(patched)
      if error is None:
        assert pipeline.prepare_if_needed(config, tmp_path / "w") == winner
      else:
        with pytest.raises(UserError, match=error):
          pipeline.prepare_if_needed(config, tmp_path / "w")
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "w"]


def test_damaged_prepared_data_is_named(tmp_path, capsys):
  corpus = write_corpus(tmp_path / "corpus.txt", 40)
  argv = prepare_argv(tmp_path / "w", corpus)
  assert cli.main(argv) == 0
  data = tmp_path / "w" / "data"
  shard = data / "train-00001-of-00003.tfrecord"
  original = shard.read_bytes()
  cases = [("a truncated shard", lambda: shard.write_bytes(original[:-7]), f"{shard} has {len(original) - 7} bytes"),
           ("a missing shard", shard.unlink, f"{shard} is missing"),
           ("metadata without its data", lambda: [p.unlink() for p in data.glob("*.tfrecord")], "is missing")]
  for _, damage, message in cases:
    damage()
    before = snapshot(tmp_path)
    assert message in error_line(capsys, argv)
    assert snapshot(tmp_path) == before
  with pytest.raises(UserError, match="is missing; delete"):
    pipeline.train_dataset(config := small_config(f"data.source={corpus}"), get_objective(config), tmp_path / "w")

  # Files that are not prepared data (the leftovers of an old run, or the user's own) are neither used nor deleted.
  (data / "metadata.json").unlink()
  (data / "train-00000-of-00003.tfrecord.partial").write_bytes(b"left by a run of an older version")
  before = snapshot(tmp_path)
  assert "holds files but no metadata.json" in error_line(capsys, argv)
  assert snapshot(tmp_path) == before


def test_lines_that_are_not_utf8_are_counted_once_per_pass(tmp_path, capsys):
  corpus = write_corpus(tmp_path / "corpus.txt", 30, bad_lines=3)
  assert cli.main(prepare_argv(tmp_path / "w", corpus)) == 0
  warnings = [line for line in capsys.readouterr().err.splitlines() if "not valid UTF-8" in line]
  assert len(warnings) == 2 and all("skipped 3 line(s)" in w for w in warnings)  # tokenizer pass, prepare pass
  assert json.loads((tmp_path / "w" / "data" / "metadata.json").read_text())["skipped_lines"] == 3


def _cut_after_pieces(model: bytes, pieces: int) -> bytes:
  """The serialized model cut short after its first `pieces` records (field 1, length-delimited)."""
  position = 0
  for _ in range(pieces):
    assert model[position] == 0x0A
    position, length, shift = position + 1, 0, 0
    while True:
      byte = model[position]
      position += 1
      length |= (byte & 0x7F) << shift
      shift += 7
      if byte < 0x80:
        break
    position += length
  return model[:position]


def test_tokenizer_files_are_checked(tmp_path, capsys):
  corpus = write_corpus(tmp_path / "corpus.txt", 40)
  assert cli.main(prepare_argv(tmp_path / "w", corpus)) == 0
  trained = tmp_path / "w" / "tokenizer" / "spm.model"
  good = trained.read_bytes()
  assert tokenizer_lib.load(trained).vocab_size == 60
  mine = tmp_path / "mine.model"
  shutil.copy(trained, mine)
  other = tokenizer_lib.train(Source(config_lib.load_config("bert_tiny", [f"data.source={corpus}"]).data).sentences(),
                              tmp_path / "other.model", 60, model_type="bpe")
  assert cli.main(prepare_argv(tmp_path / "w2", corpus, f"--config.data.tokenizer={mine}")) == 0
  small = tokenizer_lib.train(["a b c d e f g h i j k l m n o p q r s t u v w x y z"] * 3, tmp_path / "chars.model", 33)
  cases = [  # (what the user did, the command, the error)
      ("the trained tokenizer was cut short", lambda: trained.write_bytes(_cut_after_pieces(good, 30)),
       prepare_argv(tmp_path / "w", corpus), f"{trained} has 30 ids but was trained with 60"),
      ("data.tokenizer was cut short", lambda: mine.write_bytes(_cut_after_pieces(good, 30)),
       prepare_argv(tmp_path / "w2", corpus, f"--config.data.tokenizer={mine}"),
       f"tokenizer {mine} has 30 ids but model.vocab_size=60"),
      ("data.tokenizer was replaced by one of the same size", lambda: shutil.copy(other.path, mine),
       prepare_argv(tmp_path / "w2", corpus, f"--config.data.tokenizer={mine}"),
       f"tokenizer {mine} has changed since the data in {tmp_path / 'w2' / 'data'} was prepared"),
      ("a character-level tokenizer for a model of 4096 embeddings", lambda: None,
       ["prepare", "--config", "bert_tiny", "--workdir", str(tmp_path / "w3"), "--source", str(corpus),
        f"--config.data.tokenizer={small.path}"], "has 33 ids but model.vocab_size=4096, and 4063 embeddings"),
  ]
  for _, change, argv, message in cases:
    change()
    before = snapshot(tmp_path)
    assert message in error_line(capsys, argv)
    assert snapshot(tmp_path) == before
  config = small_config(f"data.source={corpus}", f"data.tokenizer={mine}")
  with pytest.raises(UserError, match=f"tokenizer {mine} has changed since"):  # what train and evaluate load
    pipeline.load_tokenizer(config, tmp_path / "w2")


def test_tokenizer_and_model_sizes_must_agree():
  class Sized:
    path, pad_id = "t.model", 0

    def __init__(self, pieces: int, extra_ids: int = 0):
      self.vocab_size, self.extra_ids = pieces + extra_ids, extra_ids

  def fits(tokenizer, rows: int) -> bool:
    try:
      tokenizer_lib.check_model_fit(tokenizer, ml_collections.ConfigDict({"vocab_size": rows}))
      return True
    except UserError:
      return False

  assert fits(Sized(32000, 100), 32128)  # T5: 32,100 ids in 32,128 rows (rounded up to 128)
  assert fits(Sized(30522), 30522) and fits(Sized(4096), 4096)
  assert not fits(Sized(32000, 100), 32256) and not fits(Sized(32000), 32128)  # forgotten sentinels
  assert not fits(Sized(1341), 4096) and not fits(Sized(4097), 4096) and not fits(Sized(30), 60)
  with pytest.raises(UserError, match=r"--config.model.vocab_size=32000 \(or give its T5 sentinels"):
    tokenizer_lib.check_model_fit(Sized(32000), ml_collections.ConfigDict({"vocab_size": 32128}))


@pytest.mark.parametrize("overrides, message", [
    (["data.seq_len=130"], "data.seq_len=130 is more than the model's 128 positions (model.max_position=130 less"),
    (["data.seq_len=200", "model.max_position=200"], "set --config.data.seq_len=198"),
    (["objective.packing=pairs"], "gives segment B token type 1 but model.type_vocab_size=1"),
])
def test_objective_settings_the_model_cannot_take_stop_before_any_work(tmp_path, capsys, overrides, message):
  argv = ["train", "--config", "roberta_tiny", "--workdir", str(tmp_path / "w"), "--config.data.source=synthetic",
          *[f"--config.{o}" for o in overrides]]
  assert message in error_line(capsys, argv)
  assert list(tmp_path.iterdir()) == []


def test_synthetic_batches_stay_inside_the_model_tables():
  """The synthetic token types are the ones the objective's packing makes, and RoBERTa's offset positions allow
  exactly max_sequence_length tokens: one more reads past the position table, which gives NaN."""
  bert = config_lib.load_config("bert_tiny")
  assert get_objective(bert).synthetic_batch(2, np.random.default_rng(0))["token_type_ids"].max() == 1
  assert models.max_sequence_length(bert.model) == bert.model.max_position
  assert models.max_sequence_length(config_lib.load_config("xlnet_tiny").model) is None
  config = config_lib.load_config("roberta_tiny", ["objective.max_predictions=4", "data.seq_len=16",
                                                   "model.max_position=18"])
  assert models.max_sequence_length(config.model) == 16
  batch = get_objective(config).synthetic_batch(2, np.random.default_rng(0))
  assert batch["token_type_ids"].max() == 0
  model = models.build_model(config.model)
  inputs = [batch[k] for k in ("input_ids", "token_type_ids", "attention_mask", "masked_positions")]
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda shape: rng.normal(0, 0.02, shape.shape).astype(shape.dtype),
                        jax.eval_shape(model.init, jax.random.key(0), *inputs))
  apply = jax.jit(model.apply)
  assert np.isfinite(np.asarray(apply(params, *inputs)["mlm_logits"])).all()
  longer = [np.concatenate([x, x[:, -1:]], 1) for x in inputs[:3]] + inputs[3:]
  assert not np.isfinite(np.asarray(apply(params, *longer)["mlm_logits"])).all()


def test_paths_relative_to_the_current_directory(tmp_path, capsys, monkeypatch):
  write_corpus(tmp_path / "corpus.txt", 40)
  monkeypatch.chdir(tmp_path)
  assert cli.main(["tokenizer", "--config", "bert_tiny", "--source", "corpus.txt", "--output", "tok.model",
                   "--vocab-size", "60"]) == 0
  assert (tmp_path / "tok.model").is_file()
  relative = ["--config.data.source=*.txt", "--config.data.tokenizer=tok.model", "--config.data.prepared_dir=prepared"]
  assert cli.main(["prepare", "--config", "bert_tiny", "--workdir", "w", *SMALL, *relative]) == 0
  metadata = json.loads((tmp_path / "prepared" / "metadata.json").read_text())
  assert metadata["tokenizer"] == str(tmp_path / "tok.model")
  config = small_config(*[o[len("--config."):] for o in relative])
  assert pipeline.load_tokenizer(config, "w").path == str(tmp_path / "tok.model")
  assert len(list(pipeline.documents(config, "w", "eval").as_numpy_iterator())) == 4
  assert absolute_spec("jsonl:data/*.jsonl") == f"jsonl:{tmp_path}/data/*.jsonl"
  for kept in ("demo", "synthetic", "tfds:wikipedia/20230601.en", "gs://bucket/corpus-*.txt", "jsonl:gs://b/x"):
    assert absolute_spec(kept) == kept


def test_a_full_disk_stops_with_one_line_and_publishes_nothing(tmp_path, capsys, monkeypatch):
  from bert_jax.data.tf_cpu import tf

  corpus = write_corpus(tmp_path / "corpus.txt", 40)
  tok = tmp_path / "tok.model"
  assert cli.main(["tokenizer", "--config", "bert_tiny", "--source", str(corpus), "--output", str(tok),
                   "--vocab-size", "60"]) == 0

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  def tensorflow_full(*args, **kwargs):
    raise tf.errors.ResourceExhaustedError(None, None, "/x/train-00000-of-00003.tfrecord; No space left on device")

  with_tokenizer = [f"--config.data.tokenizer={tok}"]
  tokenizer_command = ["tokenizer", "--config", "bert_tiny", "--source", str(corpus), "--vocab-size", "60"]
  cases = [  # (what fills the disk, the command, the path the error names)
      (prepare._ShardWriters, "write", full, prepare_argv(tmp_path / "w1", corpus, *with_tokenizer),
       tmp_path / "w1" / "data"),
      (prepare._ShardWriters, "write", tensorflow_full, prepare_argv(tmp_path / "w2", corpus, *with_tokenizer),
       tmp_path / "w2" / "data"),
      (LOCAL_PATH, "write_text", full, prepare_argv(tmp_path / "w3", corpus, *with_tokenizer),
       tmp_path / "w3" / "data"),
      (LOCAL_PATH, "write_bytes", full, prepare_argv(tmp_path / "w4", corpus), tmp_path / "w4" / "tokenizer"),
      (LOCAL_PATH, "write_bytes", full, [*tokenizer_command, "--output", str(tmp_path / "new.model")],
       tmp_path / "new.model"),
      (LOCAL_PATH, "write_bytes", full, [*tokenizer_command, "--output", str(tok), "--force"], tok),
  ]
  for owner, name, raiser, argv, target in cases:
    before = snapshot(tmp_path)
    with monkeypatch.context() as patched:
      patched.setattr(owner, name, raiser)
      line = error_line(capsys, argv, status=1, alone=False)
    assert line == f"bert-jax: error: {target}: no space left on device; free some space and run again"
    assert snapshot(tmp_path) == before and not leftovers(tmp_path)
