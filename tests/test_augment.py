"""TinyBERT's data augmentation (bert_jax/augment.py): which words are replaced, the replacement loop against a port
of the release's, the masked LM's input, GloVe neighbours, and `bert-jax augment` through to `finetune` reading it."""

import json
from pathlib import Path
import random

from cli_helpers import error_line, train_tiny_bert, write_corpus
from ml_collections import ConfigDict
import numpy as np
from original_ports import tinybert_augment
import pytest

from bert_jax import augment, cli
from bert_jax.data import tasks as tasks_lib
from bert_jax.errors import UserError


def test_the_words_replaced_are_letters_and_not_stop_words():
  text = "The parser raises a TypeError, and Python's docs (3.12) say so: héllo 中文 x2"
  words = [text[a:b] for a, b in augment.replaceable(text)]
  assert words == ["parser", "raises", "TypeError", "Python", "docs", "say", "héllo"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_variants_are_the_releases_draws(seed):
  """On space-separated words (where the release's basic tokens and ours agree), the same candidates and the same
  seed give the release's sentences in its order."""
  rng = np.random.default_rng(seed)
  vocabulary = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
  for _ in range(20):
    tokens = list(rng.choice(vocabulary, int(rng.integers(3, 12))))
    text = " ".join(tokens)
    spans, start = [], 0
    for token in tokens:
      spans.append((start, start + len(token)))
      start += len(token) + 1
    chosen = sorted(rng.choice(len(tokens), int(rng.integers(1, len(tokens) + 1)), replace=False).tolist())
    candidates = {k: list(rng.choice(vocabulary, int(rng.integers(1, 5)))) for k in chosen}
    settings = augment.Settings(copies=8, probability=0.4)
    ours = augment.variants(text, [(spans[k], candidates[k]) for k in chosen], settings, random.Random(seed))
    release = tinybert_augment(tokens, candidates, 8, 0.4, random.Random(seed))
    assert ours == release


def test_a_word_is_replaced_with_the_settings_probability():
  text = " ".join(["word"] * 50)
  words = [(span, ["other"]) for span in augment.replaceable(text)]
  assert len(words) == 50
  found = augment.variants(text, words, augment.Settings(copies=400, probability=0.4), random.Random(0))
  assert found[0] == text and len(found) == 401
  rate = np.mean([v.split().count("other") / 50 for v in found[1:]])
  assert abs(rate - 0.4) < 0.01


class _Tokenizer:
  """Words to ids one for one, as a SentencePiece model with every word in its vocabulary would."""
  cls_id, sep_id, mask_id, pad_id = 1, 2, 3, 0

  def __init__(self):
    self.ids: dict[str, int] = {}

  def encode(self, texts):
    return [[self.ids.setdefault(w, 10 + len(self.ids)) for w in t.split()] for t in texts]


def test_the_masked_lm_reads_the_masked_text_then_the_text():
  lm = augment.MaskedLM.__new__(augment.MaskedLM)
  lm.tokenizer, lm.limit, lm.two_segments = _Tokenizer(), 512, True
  text = "one two three four"
  ids, types, position = lm.frame(text, (4, 7))
  one, two, three, four = lm.tokenizer.encode([text])[0]
  assert ids == [1, one, 3, three, four, 2, one, two, three, four, 2]
  assert types == [0] * 6 + [1] * 5 and position == 2
  lm.limit = 2
  assert lm.frame(text, (8, 13)) is None  # the mask falls past the model's positions: no candidates (the release)


def test_glove_neighbours_by_cosine_keep_the_words_case(tmp_path):
  path = tmp_path / "glove.txt"
  path.write_text("king 1 0 0\nqueen 0.9 0.1 0\nprince 0.8 0.3 0\napple 0 0 1\n")
  vectors = augment.WordVectors(str(path))
  assert vectors.nearest("king", 2) == ["queen", "prince"]
  assert vectors.nearest("King", 1) == ["Queen"]
  assert vectors.nearest("pear", 3) == []
  path.write_text("broken\n")
  with pytest.raises(UserError, match="word and its numbers"):
    augment.WordVectors(str(path))


def _lines_task(root: Path) -> list[str]:
  for split, rows in (("train", ["the film was good\tyes", "the plot was bad\tno"]), ("dev", ["a good cast\tyes"])):
    (root / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
  return ["--task", "files", f"--config.task.train={root / 'train.tsv'}", f"--config.task.dev={root / 'dev.tsv'}"]


def test_augment_writes_variants_that_finetune_trains_on(tmp_path, capsys):
  corpus = write_corpus(tmp_path / "corpus.txt")
  model = tmp_path / "model"
  train_tiny_bert(corpus, model)
  task = _lines_task(tmp_path)
  output = tmp_path / "augmented.jsonl"
  assert cli.main(["augment", "--init", str(model), *task, "--output", str(output), "--copies", "5",
                   "--probability", "1.0"]) == 0
  assert "fine-tune on them with --config.task.augmented=" in capsys.readouterr().out
  rows = [json.loads(line) for line in output.read_text().splitlines()]
  originals = [r for r in rows if r["guid"] in ("0", "1")]
  assert [r["texts"]["sentence"] for r in originals] == ["the film was good", "the plot was bad"]
  variants = [r for r in rows if r not in originals]
  assert variants and all(r["task"] == "files" for r in rows)
  for r in variants:  # every word of letters not a stop word replaced (probability 1), the stop words kept
    original = originals[int(r["guid"].split("-")[0])]
    words = r["texts"]["sentence"].split()
    assert words[0] == "the" and words[2] == "was" and len(words) == 4 and r["label"] == original["label"]
  config = ["--config.train.batch_size=8", "--config.data.seq_len=16", "--config.eval.batch_size=8",
            "--config.task.epochs=1"]
  assert cli.main(["finetune", "--init", str(model), "--workdir", str(tmp_path / "tuned"), *task, *config,
                   f"--config.task.augmented={output}"]) == 0
  saved = json.loads((tmp_path / "tuned" / "config.json").read_text())
  assert saved["train"]["steps"] == -(-len(rows) // 8)  # one epoch of the augmented split, not of the two examples
  found = tasks_lib.load(ConfigDict(saved["task"]))
  assert len(found.read("train")) == len(rows) and len(found.read("dev")) == 1
  refused = error_line(capsys, ["augment", "--init", str(tmp_path / "tuned"), *task, "--output", str(output)])
  assert "objective classification; the candidates are a masked LM's guesses" in refused


def test_an_augmented_file_of_another_task_is_refused(tmp_path):
  path = tmp_path / "augmented.jsonl"
  path.write_text(json.dumps({"task": "glue/sst2", "guid": "0", "texts": {"sentence": "x"}, "label": 0}) + "\n")
  config = ConfigDict({"name": "demo", "data_dir": "", "augmented": str(path)})
  with pytest.raises(UserError, match="written for task 'glue/sst2', not demo"):
    tasks_lib.load(config).read("train")
  config.augmented = str(tmp_path / "missing.jsonl")
  with pytest.raises(UserError, match="bert-jax augment --task demo"):
    tasks_lib.load(config)
