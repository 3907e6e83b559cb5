"""The README's commands as the README states them (read from README.md, not copied here), run from a temporary
current directory that holds what a fresh clone's root holds (configs/), with the README's relative paths:

- the quickstart `bert-jax train` with only the step count and checkpoint interval appended: a committed checkpoint,
  each step once in metrics.jsonl; then the README's first `bert-jax evaluate` line for that workdir
  (eval/<step>.json); then the
  same train command with more steps resumes where the first stopped;
- every `bert-jax params` line;
- the `bert-jax convert` lines, on a tiny Hugging Face BERT written where the README's path points;
- the demo fine-tuning lines, then evaluate, predict and export on what they wrote;
- the TinyBERT block: its teacher, general distillation, augment, both task stages and the student alone.
"""

import json
import os
from pathlib import Path
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bert_jax import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def commands(prefix: str, text: str = README) -> list[str]:
  """Every README line (in a bash block of `text`) that runs `bert-jax <prefix>`, without its trailing comment; a
  line chained with && gives its last part."""
  found = []
  for block in re.findall(r"```bash\n(.*?)```", text, re.S):
    for line in block.splitlines():
      command = line.split("&&")[-1].split(" #")[0].strip()
      if command.startswith(f"bert-jax {prefix}"):
        found.append(command)
  return found


def section(heading: str) -> str:
  """The README's text from `heading` to the next heading."""
  return README.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]


@pytest.fixture
def clone_root(tmp_path, monkeypatch):
  shutil.copytree(ROOT / "configs", tmp_path / "configs")
  monkeypatch.chdir(tmp_path)
  return tmp_path


def run(command: str, *extra: str) -> str:
  """A README command in a subprocess, as a user's shell runs it (the installed `bert-jax` script)."""
  script = Path(sys.executable).parent / "bert-jax"
  argv = [str(script) if script.exists() else shutil.which("bert-jax"), *shlex.split(command)[1:], *extra]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
  result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, f"{command} {' '.join(extra)}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
  return result.stdout + result.stderr


def test_quickstart_trains_checkpoints_evaluates_and_resumes(clone_root):
  quickstart = README.split("```bash\n", 1)[1].split("```")[0].strip()
  train = quickstart.split("&&")[-1].strip()
  assert train.startswith("bert-jax train") and "--workdir runs/" in train, quickstart
  relative = re.search(r"--workdir (\S+)", train).group(1)
  workdir = clone_root / relative

  run(train, "--config.train.steps=6", "--config.checkpoint.every=3")
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["0", "3", "6"]
  assert (workdir / "checkpoints" / "6" / "bert_jax_sha256.json").is_file()

  same_run = [c for c in commands("evaluate") if re.search(r"--workdir (\S+)", c).group(1) == relative]
  assert same_run, "the README has no `bert-jax evaluate` line for the quickstart's workdir"
  evaluate = same_run[0]
  output = run(evaluate)
  assert re.search(r"^step 6 \| loss [\d.]+ \| mlm_loss", output, re.M), output
  assert json.loads((workdir / "eval" / "6.json").read_text())["step"] == 6

  output = run(train, "--config.train.steps=9", "--config.checkpoint.every=3")
  assert f"resuming from checkpoint 6 in {workdir / 'checkpoints'}" in output
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  logged = [r["step"] for r in rows if "loss" in r]
  assert logged == sorted(set(logged)) and {3, 6, 9} <= set(logged), logged  # each step once, in order
  assert (workdir / "checkpoints" / "9").is_dir() and not (workdir / ".lock").exists()


def test_params_lines(clone_root, capsys):
  lines = [line for line in commands("params") if "converted/" not in line]  # that one follows the convert line
  assert len(lines) >= 3
  for line in lines:
    assert cli.main(shlex.split(line)[1:]) == 0, line
  assert "110,106,428" in capsys.readouterr().out


def test_convert_lines_on_a_tiny_bert(clone_root):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  lines = commands("convert") + [line for line in commands("params") if "converted/" in line]
  # The continued-pretraining recipe's --from-hf (bbu/) runs in tests/test_hf_tokenizer_in.py, with a tokenizer.
  [from_hf] = [line for line in lines if "--from-hf" in line and "converted/" in line]
  [to_hf] = [line for line in lines if "--to-hf" in line]
  source = re.search(r"--from-hf (\S+)", from_hf).group(1)
  hf_config = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=64)
  torch.manual_seed(0)
  model = transformers.BertForPreTraining(hf_config).eval()
  model.save_pretrained(source)
  for line in [from_hf, *[line for line in lines if line.startswith("bert-jax params")], to_hf]:
    assert cli.main(shlex.split(line)[1:]) == 0, line
  exported = transformers.BertForPreTraining.from_pretrained(re.search(r"--output (\S+)", to_hf).group(1)).eval()
  ids = torch.tensor([[2, 5, 7, 11, 3, 0]])
  with torch.no_grad():
    expected, got = model(ids).prediction_logits.numpy(), exported(ids).prediction_logits.numpy()
  np.testing.assert_allclose(got, expected, atol=1e-5)


def test_finetune_lines_then_evaluate_predict_and_export(clone_root):
  """The README's demo fine-tuning lines (pretrained and scratch) at a tenth of an epoch, its evaluate line for that
  workdir, then predict and an export that transformers loads with its tokenizer and that gives the same
  probabilities."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  quickstart = README.split("```bash\n", 1)[1].split("```")[0].strip().split("&&")[-1].strip()
  run(quickstart, "--config.train.steps=4", "--config.checkpoint.every=4")
  demo = [c for c in commands("finetune") if "--init runs/demo " in c and "--task demo " in c]
  assert len(demo) == 2 and any("--scratch" in c for c in demo), demo
  short = ("--config.task.epochs=0.1", "--config.data.seq_len=48")
  for line in demo:
    output = run(line, *short)
    assert re.search(r"best dev \(.*\): step \d+ \| accuracy [\d.]+ \| f1", output), output
  pretrained = next(c for c in demo if "--scratch" not in c)
  relative = re.search(r"--workdir (\S+)", pretrained).group(1)
  workdir = clone_root / relative
  [evaluate] = [c for c in commands("evaluate") if f"--workdir {relative}" in c]
  assert re.search(r"^step \d+ \| accuracy [\d.]+ \| f1", run(evaluate), re.M)

  step = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  pair = "The for statement iterates over a sequence.\tThe break statement ends the loop."
  predicted = json.loads(run(f"bert-jax predict --workdir {relative} --json", "--text", pair).splitlines()[-1])
  assert predicted["output"] in ("same", "different")
  run(f"bert-jax convert --to-hf --config {relative}/config.json --params {relative}/checkpoints/{step} "
      "--output exported-topics")
  model = transformers.AutoModelForSequenceClassification.from_pretrained("exported-topics").eval()
  tokenizer = transformers.AutoTokenizer.from_pretrained("exported-topics")
  assert model.config.id2label == {0: "different", 1: "same"}
  encoded = tokenizer(*pair.split("\t"), return_tensors="pt", truncation=True, max_length=48)
  with torch.no_grad():
    probabilities = torch.softmax(model(**encoded).logits, -1)[0].numpy()
  ours = {c["token"]: c["probability"] for c in predicted["predictions"][0]["candidates"]}
  np.testing.assert_allclose(probabilities, [ours["different"], ours["same"]], atol=1e-4)



def test_tinybert_block_distills_augments_and_fine_tunes(clone_root):
  """The README's TinyBERT block as written, each line cut to a few steps: the teacher and its fine-tuning, general
  distillation, augment (its first 4 examples), both task stages and the student alone."""
  tinybert = commands("", section("### TinyBERT: general, then task-specific distillation"))
  kinds = ["train", "finetune", "train", "augment", "finetune", "finetune", "finetune"]
  assert [c.split()[1] for c in tinybert] == kinds, tinybert
  teacher, teacher_task, distill, augment, intermediate, prediction, alone = tinybert
  few_steps = ("--config.train.steps=2", "--config.checkpoint.every=2")
  short = ("--config.task.epochs=0.1", "--config.data.seq_len=48")
  run(teacher, *few_steps)
  run(teacher_task, *short)
  run(distill, *few_steps)
  assert "wrote " in run(augment, "--examples", "4", "--copies", "2")
  for line, term in ((intermediate, "hidden_loss"), (prediction, "soft_loss"), (alone, "accuracy")):
    output = run(line, *(short if line == alone else short[1:]))
    assert re.search(r"best dev \(.*\): step \d+ \| accuracy", output), output
    workdir = clone_root / re.search(r"--workdir (\S+)", line).group(1)
    assert any(term in json.loads(r) for r in (workdir / "metrics.jsonl").read_text().splitlines())
