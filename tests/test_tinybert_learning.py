"""TinyBERT's two stages through the CLI at tiny size: a BERT teacher fine-tuned on a lines task ("does the text
contain 'good'?"), a TinyBERT student distilled from the pretrained teacher (general distillation), then inside
`finetune` its intermediate-layer stage and its prediction-layer stage against the fine-tuned teacher. The prediction
stage never reads a label: the student learns the task from the teacher's logits alone. The demo task's comparison
with the student fine-tuned alone takes longer than a test (README, "TinyBERT")."""

import json
from pathlib import Path

from cli_helpers import WORDS, train_tiny_bert, write_corpus
import numpy as np
import pytest

from bert_jax import cli


def _lines_task(root: Path) -> list[str]:
  """256 training texts, 64 dev, 16 test; every other one contains 'good' (label yes)."""
  rng = np.random.default_rng(0)
  flags = []
  for split, n in (("train", 256), ("dev", 64), ("test", 16)):
    rows = ["sentence\tlabel"]
    for k in range(n):
      text = list(rng.choice(WORDS[:10], 6))
      if k % 2:
        text[rng.integers(6)] = "good"
      rows.append(f"{' '.join(text)}\t{['no', 'yes'][k % 2]}")
    (root / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    flags.append(f"--config.task.{split}={root / f'{split}.tsv'}")
  return ["--task", "files", *flags, "--config.data.seq_len=16", "--config.eval.batch_size=16"]


def _finetune(init: Path, workdir: Path, task: list[str], *extra: str) -> dict:
  assert cli.main(["finetune", "--init", str(init), "--workdir", str(workdir), *task, *extra]) == 0
  records = [json.loads(p.read_text()) for p in (workdir / "eval").glob("*.json")]
  return max(records, key=lambda r: r["step"])


def _train_log(workdir: Path) -> list[dict]:
  return [r for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines()) if "hidden_loss" in r
          or "soft_loss" in r]


@pytest.mark.slow
def test_tinybert_distills_in_two_stages_inside_finetune(tmp_path):
  corpus = write_corpus(tmp_path / "corpus.txt")
  teacher = tmp_path / "teacher"
  train_tiny_bert(corpus, teacher)
  task = _lines_task(tmp_path)
  tuned = _finetune(teacher, tmp_path / "teacher-task", task, "--config.optimizer.learning_rate=3e-3",
                    "--config.task.epochs=4")
  assert tuned["accuracy"] > 0.9, tuned
  general = tmp_path / "tinybert"
  assert cli.main(["train", "--config", "tinybert_tiny", "--workdir", str(general), f"--config.data.source={corpus}",
                   f"--config.data.tokenizer={teacher / 'tokenizer' / 'spm.model'}", "--config.model.vocab_size=64",
                   "--config.model.hidden_size=32", "--config.model.fit_size=64", "--config.train.steps=10",
                   "--config.train.batch_size=8", "--config.data.seq_len=32", "--config.data.eval_tokens=0",
                   f"--config.objective.teacher={teacher}", "--config.checkpoint.every=10", "--config.eval.every=0",
                   "--config.train.log_every=5", "--config.optimizer.warmup_steps=2"]) == 0
  general_log = _train_log(general)
  assert general_log[-1]["hidden_loss"] < general_log[0]["hidden_loss"], general_log
  distill = ["--config.objective.name=tinybert_task", f"--config.objective.teacher={tmp_path / 'teacher-task'}",
             "--config.optimizer.learning_rate=3e-3", "--config.train.log_every=4"]
  _finetune(general, tmp_path / "stage1", task, *distill, "--config.objective.stage=intermediate",
            "--config.task.epochs=2")
  stage1_log = _train_log(tmp_path / "stage1")
  first, last = stage1_log[0], stage1_log[-1]
  assert last["hidden_loss"] < first["hidden_loss"] and last["attention_loss"] < first["attention_loss"], stage1_log
  distilled = _finetune(tmp_path / "stage1", tmp_path / "stage2", task, *distill, "--config.objective.stage=prediction",
                        "--config.task.epochs=4")
  assert distilled["accuracy"] > 0.9, distilled  # the task, learned from the teacher's logits alone
  assert _train_log(tmp_path / "stage2")[-1]["teacher_agreement"] > 0.9
