"""Shared by tests that run the CLI: the one error line of bad inputs, what was on disk before, a small corpus and the
smallest pretrained model."""

from pathlib import Path

import numpy as np

from bert_jax import cli

WORDS = ("the film was long and it a plot some actors good bad one two cast scene story tells of old new cat dog ran "
         "sat on mat under over big small red blue green music score light dark end start").split()


def write_corpus(path: Path) -> Path:
  """300 documents of two sentences (8 and 6 words drawn from WORDS)."""
  rng = np.random.default_rng(0)
  path.write_text("\n\n".join(f"{' '.join(rng.choice(WORDS, 8))}.\n{' '.join(rng.choice(WORDS, 6))}."
                               for _ in range(300)))
  return path


def snapshot(root: Path) -> dict:
  """Every file below root with its size and mtime."""
  return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
          for p in sorted(root.rglob("*")) if p.is_file()}


def error_line(capsys, argv: list[str], status: int = 2, alone: bool = True) -> str:
  """The one `bert-jax: error:` line of a failed command, the last on stderr; with `alone`, the only line."""
  capsys.readouterr()
  assert cli.main(argv) == status
  err = capsys.readouterr().err
  assert "Traceback" not in err
  errors = [line for line in err.splitlines() if line.startswith("bert-jax: error:")]
  assert len(errors) == 1 and err.rstrip("\n").endswith(errors[0]), err
  if alone:
    assert err.count("\n") == 1, err
  return errors[0]


def train_tiny_bert(corpus: Path, workdir: Path, vocab_size: int = 64) -> Path:
  """`bert-jax train` of bert_tiny on `corpus` with a tokenizer of its own (`vocab_size` pieces): 2 steps of 8 x 32
  tokens, one checkpoint, no held-out data; the smallest pretrained model the CLI takes."""
  assert cli.main(["train", "--config", "bert_tiny", "--workdir", str(workdir), f"--config.data.source={corpus}",
                   f"--config.model.vocab_size={vocab_size}", "--config.data.character_coverage=1.0",
                   "--config.train.steps=2", "--config.train.batch_size=8", "--config.data.seq_len=32",
                   "--config.data.eval_tokens=0", "--config.checkpoint.every=2"]) == 0
  return workdir
