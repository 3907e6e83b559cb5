"""Fine-tuning: GLUE's files as the benchmark ships them, users' files, the demo task, framing and truncation, the
batch stream's epochs and exact resume, and runs through the CLI that learn (BERT with a classification head, T5 text
to text, BART and GPT-2 with theirs, exported and checked against transformers) and write GLUE submission files."""

import json
from pathlib import Path
import re

from cli_helpers import WORDS, error_line, snapshot, train_tiny_bert, write_corpus
import ml_collections
import numpy as np
import pytest

from bert_jax import cli, recipes
from bert_jax.data import tasks
from bert_jax.errors import UserError
from bert_jax.objectives import classification

COLA_TRAIN = "gj04\t1\t\tOur friends won't buy this analysis.\ngj04\t0\t*\tOne more pseudo generalization.\n"
COLA_TEST = "index\tsentence\n0\tBill whistled past the house.\n1\tThe car honked.\n"
MNLI_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
               "sentence2_parse\tsentence1\tsentence2")
QQP_TRAIN = ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
             "1\t3\t4\tHow do I learn?\tWhat is learning?\t0\n2\t5\t6\tA broken line\n"
             "3\t7\t8\tWhy \"quotes\"?\tWhy quotes?\t1\n")


def write_glue(root: Path) -> None:
  (root / "CoLA").mkdir(parents=True)
  (root / "CoLA" / "train.tsv").write_text(COLA_TRAIN)
  (root / "CoLA" / "dev.tsv").write_text(COLA_TRAIN)
  (root / "CoLA" / "test.tsv").write_text(COLA_TEST)
  (root / "MNLI").mkdir()
  rows = [MNLI_HEADER + "\tlabel1\tgold_label",
          "0\t1\t1e\tfiction\t(a)\t(b)\t(a)\t(b)\tThe cat sat.\tA cat sat.\tentailment\tentailment",
          "1\t2\t2n\tfiction\t(a)\t(b)\t(a)\t(b)\tIt rained.\tIt was dry.\tcontradiction\tcontradiction"]
  for name in ("train", "dev_matched", "dev_mismatched"):
    (root / "MNLI" / f"{name}.tsv").write_text("\n".join(rows) + "\n")
  for name in ("test_matched", "test_mismatched"):
    row = "7\t1\t1e\tfic\t(a)\t(b)\t(a)\t(b)\tHe ran.\tHe moved."
    (root / "MNLI" / f"{name}.tsv").write_text(f"{MNLI_HEADER}\n{row}\n")
  (root / "diagnostic").mkdir()
  (root / "diagnostic" / "diagnostic.tsv").write_text("index\tsentence1\tsentence2\n0\tNo dog.\tA dog.\n")
  (root / "QQP").mkdir()
  (root / "QQP" / "train.tsv").write_text(QQP_TRAIN)
  (root / "STS-B").mkdir()
  header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
  (root / "STS-B" / "train.tsv").write_text(f"{header}\tscore\n0\tnews\tf\t2012\t1\tnone\tnone\tA man.\tA guy.\t4.25\n")


def task(**values) -> tasks.Task:
  return tasks.load(ml_collections.ConfigDict({**recipes.TASK, **values}))


def test_glue_files_as_the_benchmark_ships_them(tmp_path):
  write_glue(tmp_path)
  cola = task(name="glue/cola", data_dir=str(tmp_path))
  train = cola.read("train")
  assert [e.label for e in train] == [1, 0]
  assert train[0].texts == (("sentence", "Our friends won't buy this analysis."),)
  assert [e.guid for e in cola.read("test")] == ["0", "1"] and cola.read("test")[0].label is None
  assert cola.metrics == ("matthews",) and cola.submission == {"test": "CoLA"}

  mnli = task(name="glue/mnli", data_dir=str(tmp_path / "MNLI"))  # the task's own directory works too
  assert mnli.labels == ("contradiction", "entailment", "neutral")
  assert mnli.eval_splits == ("dev_matched", "dev_mismatched")
  assert mnli.submission == {"test_matched": "MNLI-m", "test_mismatched": "MNLI-mm", "ax": "AX"}
  first = mnli.read("train")[0]
  assert first.texts == (("premise", "The cat sat."), ("hypothesis", "A cat sat.")) and first.label == 1
  assert mnli.read("ax")[0].texts == (("premise", "No dog."), ("hypothesis", "A dog."))

  qqp = task(name="glue/qqp", data_dir=str(tmp_path)).read("train")
  assert [e.guid for e in qqp] == ["1", "3"], "the broken line is skipped"
  assert qqp[1].texts[0] == ("question1", 'Why "quotes"?')  # quotes are text in GLUE's TSV files
  stsb = task(name="glue/stsb", data_dir=str(tmp_path))
  assert stsb.kind == "regression" and stsb.read("train")[0].label == 4.25


def test_glue_errors_say_what_to_do(tmp_path):
  with pytest.raises(UserError, match="task.data_dir must hold RTE/train.tsv"):
    task(name="glue/rte", data_dir=str(tmp_path))
  with pytest.raises(UserError, match="--task-dir"):
    task(name="glue/rte")
  with pytest.raises(UserError, match="unknown GLUE task"):
    task(name="glue/squad", data_dir=str(tmp_path))


def test_own_files_in_three_formats(tmp_path):
  (tmp_path / "train.tsv").write_text("text\tlabel\tother\ngood film\tpos\tx\nbad film\tneg\ty\n")
  (tmp_path / "dev.csv").write_text('text,label\n"good, very",pos\n')
  (tmp_path / "test.jsonl").write_text(json.dumps({"id": "a7", "text": "fine"}) + "\n")
  found = task(name="files", train=str(tmp_path / "train.tsv"), dev=str(tmp_path / "dev.csv"),
               test=str(tmp_path / "test.jsonl"), text_a="text")
  assert found.labels == ("neg", "pos") and found.metrics == ("accuracy", "f1")
  assert [e.label for e in found.read("train")] == [1, 0]
  assert found.read("dev")[0].texts == (("text", "good, very"),)
  assert found.read("test")[0].guid == "a7" and found.read("test")[0].label is None
  with pytest.raises(UserError, match="no column 'sentence'"):
    task(name="files", train=str(tmp_path / "train.tsv")).read("train")


def test_demo_task_is_balanced_and_its_dev_passages_unseen():
  demo = task(name="demo")
  train, dev = demo.read("train"), demo.read("dev")
  assert len(train) > 2000 and len(dev) > 400
  for split in (train, dev):
    assert abs(np.mean([e.label for e in split]) - 0.5) < 1e-9
  passages = lambda split: {text for e in split for _, text in e.texts}  # noqa: E731
  shared = passages(train) & passages(dev)  # the documentation repeats some sections under two topics
  assert len(shared) < 0.3 * len(passages(dev)), len(shared)
  same = [e for e in dev if e.label == 1]
  assert all(a.guid.rsplit("-", 2)[0] == b.guid.rsplit("-", 2)[0] for a, b in zip(same, same))
  assert demo.read("train") == train, "the task is the same every time"


class Ids:
  cls_id, sep_id, pad_id, eos_id, eod_id = 101, 102, 0, 2, 50


def original_truncate(a: list, b: list, max_length: int) -> None:
  """google-research/bert run_classifier.py's _truncate_seq_pair, in place."""
  while len(a) + len(b) > max_length:
    (a if len(a) > len(b) else b).pop()


@pytest.mark.parametrize("lengths", [(9, 3), (3, 9), (6, 6), (20, 0), (7, 8)])
def test_truncation_as_the_original(lengths):
  a, b = list(range(lengths[0])), list(range(100, 100 + lengths[1]))
  ours = classification.truncate_pair([a, b], 9)
  original_truncate(a, b, 9)
  assert ours == [a, b]


def test_framings():
  ids = [[5, 6, 7], [8, 9]]
  tokens, types, mask = classification.frame(ids, Ids, 10, "bert")
  assert tokens.tolist() == [101, 5, 6, 7, 102, 8, 9, 102, 0, 0] and types.tolist() == [0] * 5 + [1] * 3 + [0, 0]
  assert mask.tolist() == [1] * 8 + [0, 0]
  tokens, types, _ = classification.frame(ids, Ids, 10, "roberta")
  assert tokens.tolist() == [101, 5, 6, 7, 102, 102, 8, 9, 102, 0] and not types.any()
  tokens, types, _ = classification.frame(ids, Ids, 10, "bart")  # fairseq's: one </s> (BART's eos) between
  assert tokens.tolist() == [101, 5, 6, 7, 2, 8, 9, 2, 0, 0] and not types.any()
  tokens, types, mask = classification.frame(ids, Ids, 10, "gpt2")  # the document separator between, nothing after
  assert tokens.tolist() == [5, 6, 7, 50, 8, 9, 0, 0, 0, 0] and not types.any() and mask.sum() == 6
  tokens, types, _ = classification.frame(ids, Ids, 10, "xlnet")
  assert tokens.tolist() == [5, 6, 7, 102, 8, 9, 102, 101, 0, 0] and types.tolist()[:8] == [0] * 4 + [1] * 3 + [2]
  tokens, _, _ = classification.frame([[5, 6, 7, 8, 9, 10]], Ids, 6, "bert")
  assert tokens.tolist() == [101, 5, 6, 7, 8, 102]


def test_task_batches_visit_each_example_once_an_epoch_and_resume_exactly():
  import jax
  from jax.sharding import Mesh, NamedSharding, PartitionSpec

  from bert_jax.train.batches import TaskBatches

  mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
  shardings = {"x": NamedSharding(mesh, PartitionSpec("data"))}
  arrays = {"x": np.arange(10, dtype=np.int32)}
  stream = TaskBatches(arrays, 4, 7, shardings)
  seen = np.concatenate([np.asarray(next(stream)["x"]) for _ in range(10)])  # 40 rows: 4 epochs of 10
  for epoch in range(4):
    assert sorted(seen[10 * epoch:10 * epoch + 10].tolist()) == list(range(10))
  assert seen[:10].tolist() != seen[10:20].tolist(), "each epoch has its own order"
  resumed = TaskBatches(arrays, 4, 7, shardings, start_step=6)
  assert np.asarray(next(resumed)["x"]).tolist() == seen[24:28].tolist()


def lines_task(root: Path, count: int, seed: int) -> dict:
  """A task a tiny model learns in a few epochs: does the text contain the word 'good'?"""
  rng = np.random.default_rng(seed)
  words = ["the", "film", "was", "long", "and", "it", "a", "plot", "some", "actors"]
  paths = {}
  for split, n in (("train", count), ("dev", 64), ("test", 16)):
    rows = ["sentence\tlabel"]
    for k in range(n):
      text = list(rng.choice(words, 6))
      label = int(k % 2)
      if label:
        text[rng.integers(6)] = "good"
      rows.append(f"{' '.join(text)}\t{['no', 'yes'][label]}")
    (root / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    paths[split] = str(root / f"{split}.tsv")
  return paths


def finetune_argv(init: Path, workdir: Path, files: dict, *extra: str) -> list[str]:
  return ["finetune", "--init", str(init), "--task", "files", "--workdir", str(workdir),
          f"--config.task.train={files['train']}", f"--config.task.dev={files['dev']}",
          f"--config.task.test={files['test']}", "--config.data.seq_len=16", "--config.eval.batch_size=16",
          *extra]


@pytest.fixture(scope="module")
def pretrained_bert(tmp_path_factory):
  root = tmp_path_factory.mktemp("pretrained")
  corpus = write_corpus(root / "corpus.txt")
  return train_tiny_bert(corpus, root / "run")


def test_bert_finetunes_through_the_cli_learns_and_writes_predictions(pretrained_bert, tmp_path, capsys):
  files = lines_task(tmp_path, 256, seed=0)
  workdir = tmp_path / "ft"
  argv = finetune_argv(pretrained_bert, workdir, files, "--config.optimizer.learning_rate=3e-3",
                       "--config.task.epochs=4")
  assert cli.main(argv) == 0
  out = capsys.readouterr()
  assert "new: classifier/bias (1), classifier/kernel (1)" in out.err
  records = {int(p.stem): json.loads(p.read_text()) for p in (workdir / "eval").glob("*.json")}
  assert sorted(records) == [0, 8, 16, 24, 32]  # every epoch of 256 / 32
  assert records[32]["accuracy"] > 0.9 and records[0]["accuracy"] <= 0.6, records
  assert "best dev" in out.out and "accuracy" in out.out
  rows = (workdir / "predictions" / "test.tsv").read_text().splitlines()
  assert rows[0] == "index\tprediction" and len(rows) == 17
  assert {r.split("\t")[1] for r in rows[1:]} <= {"no", "yes"}
  config = json.loads((workdir / "config.json").read_text())
  assert config["model"]["head"] == "classification" and config["optimizer"]["warmup_steps"] == 3  # 10% of 32

  assert cli.main(["evaluate", "--config", str(workdir / "config.json"), "--workdir", str(workdir), "--step",
                   "32", "--json"]) == 0
  evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert evaluated["accuracy"] == pytest.approx(records[32]["accuracy"])


def test_a_missing_label_column_names_the_columns_found(pretrained_bert, tmp_path, capsys):
  files = lines_task(tmp_path, 8, seed=2)
  for split in ("train", "dev"):
    path = Path(files[split])
    path.write_text(path.read_text().replace("sentence\tlabel", "sentence\tlab", 1))
  before = snapshot(tmp_path)
  line = error_line(capsys, finetune_argv(pretrained_bert, tmp_path / "ft", files, "--config.task.label=label"))
  assert line == (f"bert-jax: error: {files['train']} has no column 'label' (its columns: 'lab', 'sentence'); "
                  "set task.label to one of them")
  assert snapshot(tmp_path) == before and not (tmp_path / "ft").exists()


def test_finetune_resumes_and_scratch_starts_from_random_parameters(pretrained_bert, tmp_path, capsys):
  files = lines_task(tmp_path, 64, seed=1)
  workdir = tmp_path / "ft"
  assert cli.main(finetune_argv(pretrained_bert, workdir, files, "--config.task.epochs=1")) == 0
  capsys.readouterr()
  assert cli.main(finetune_argv(pretrained_bert, workdir, files, "--config.task.epochs=2")) == 0
  assert "resuming from checkpoint 2" in capsys.readouterr().err
  scratch = finetune_argv(pretrained_bert, tmp_path / "scratch", files, "--scratch", "--config.task.epochs=1")
  assert cli.main(scratch) == 0
  assert "starting from the parameters" not in capsys.readouterr().err
  assert cli.main(finetune_argv(pretrained_bert, tmp_path / "grid", files, "--learning-rates", "3e-3,1e-5",
                                "--seeds", "2", "--config.task.epochs=1")) == 0
  out = capsys.readouterr().out
  runs = sorted(str(p.relative_to(tmp_path / "grid")) for p in (tmp_path / "grid").glob("*/seed_*"))
  assert runs == sorted(f"lr_{rate}-batch_recipe/seed_{seed}" for rate in ("0.003", "1e-05") for seed in (0, 1))
  medians = dict(re.findall(r"median over 2 seeds \(.*/(lr_\S+)\): accuracy ([\d.]+)", out))
  best = re.search(r"best of the grid by accuracy: .*/(lr_\S+):", out).group(1)
  assert len(medians) == 2 and float(medians[best]) == max(map(float, medians.values())), out


def test_t5_finetunes_text_to_text(tmp_path, capsys):
  corpus = write_corpus(tmp_path / "corpus.txt")
  assert cli.main(["train", "--config", "t5_tiny", "--workdir", str(tmp_path / "run"), f"--config.data.source={corpus}",
                   "--config.data.character_coverage=1.0", "--config.model.vocab_size=80",
                   "--config.data.extra_ids=16", "--config.train.steps=2", "--config.data.eval_tokens=0",
                   "--config.checkpoint.every=2"]) == 0
  files = lines_task(tmp_path, 256, seed=2)
  workdir = tmp_path / "ft"
  assert cli.main(finetune_argv(tmp_path / "run", workdir, files, "--config.task.epochs=6",
                                "--config.optimizer.learning_rate=3e-3", "--config.data.seq_len=32")) == 0
  last = json.loads((workdir / "eval" / "48.json").read_text())
  assert last["accuracy"] > 0.9, last
  predictions = (workdir / "predictions" / "test.tsv").read_text().splitlines()[1:]
  assert len(predictions) == 16 and {p.split("\t")[1] for p in predictions} <= {"no", "yes"}


def squad_file(path: Path, count: int, seed: int) -> Path:
  """SQuAD v1.1 JSON of a question a tiny model learns to answer: which word follows 'good' in the context?"""
  rng = np.random.default_rng(seed)
  articles = []
  for k in range(count):
    words = list(rng.choice(WORDS[:10], 20))  # no "good" but the one before the answer
    at = int(rng.integers(0, 18))
    answer = str(rng.choice(WORDS[11:]))
    words[at:at + 2] = ["good", answer]
    context = " ".join(words)
    start = len(" ".join(words[:at + 1])) + 1
    qa = {"id": f"q{k}", "question": "what is good?", "answers": [{"text": answer, "answer_start": start}]}
    articles.append({"title": f"t{k}", "paragraphs": [{"context": context, "qas": [qa]}]})
  path.write_text(json.dumps({"version": "1.1", "data": articles}))
  return path


def test_bert_learns_squad_through_the_cli(pretrained_bert, tmp_path, capsys):
  train, dev = squad_file(tmp_path / "train.json", 256, 0), squad_file(tmp_path / "dev.json", 64, 1)
  workdir = tmp_path / "squad"
  assert cli.main(["finetune", "--init", str(pretrained_bert), "--task", "squad", "--workdir", str(workdir),
                   f"--config.task.train={train}", f"--config.task.dev={dev}", "--config.data.seq_len=32",
                   "--config.objective.doc_stride=8", "--config.objective.max_query_len=6",
                   "--config.optimizer.learning_rate=3e-3",
                   "--config.eval.batch_size=16", "--config.task.epochs=6"]) == 0
  records = {int(p.stem): json.loads(p.read_text()) for p in (workdir / "eval").glob("*.json")}
  last = records[max(records)]
  assert last["exact_match"] > 70 and last["f1"] >= last["exact_match"] and records[0]["exact_match"] < 10, records


@pytest.mark.parametrize("name", ["electra_tiny", "xlnet_tiny"])
def test_other_families_finetune_from_their_pretraining_runs(name, tmp_path, capsys):
  corpus = write_corpus(tmp_path / "corpus.txt")
  assert cli.main(["train", "--config", name, "--workdir", str(tmp_path / "run"), f"--config.data.source={corpus}",
                   "--config.model.vocab_size=64", "--config.data.character_coverage=1.0", "--config.train.steps=2",
                   "--config.data.eval_tokens=0", "--config.checkpoint.every=2"]) == 0
  files = lines_task(tmp_path, 256, seed=3)
  capsys.readouterr()
  assert cli.main(finetune_argv(tmp_path / "run", tmp_path / "ft", files, "--config.task.epochs=6",
                                "--config.optimizer.learning_rate=3e-3")) == 0
  err = capsys.readouterr().err
  new, left = re.search(r"new: (.*?); left out: (.*)$", err, re.M).groups()
  assert all(group.startswith("classifier") for group in new.split(", ")), err  # only the head is new
  assert ("generator/" in left) == (name == "electra_tiny"), err  # ELECTRA fine-tunes its discriminator
  records = {int(p.stem): json.loads(p.read_text())["accuracy"] for p in (tmp_path / "ft" / "eval").glob("*.json")}
  assert sorted(records) == [0, 8, 16, 24, 32, 40, 48] and records[0] <= 0.6, records  # dev: half yes, half no
  assert records[48] > 0.9, records  # the fine-tuned encoder learns the task (both reach ~0.97 by step 32)
  config = json.loads((tmp_path / "ft" / "config.json").read_text())
  assert config["objective"]["framing"] == ("xlnet" if name == "xlnet_tiny" else "bert")


def test_glue_from_tfds_maps_its_label_order_to_the_benchmarks(monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)  # mock data stands in for it
  with tfds.testing.mock_data(num_examples=6):
    mnli = task(name="tfds:glue/mnli")
    names = tfds.builder("glue/mnli").info.features["label"].names  # entailment, neutral, contradiction
    raw = list(tfds.as_numpy(tfds.builder("glue/mnli").as_dataset(split="validation_matched")))
    examples = mnli.read("dev_matched")
    assert [mnli.labels[e.label] for e in examples] == [names[r["label"]] for r in raw]
    assert examples[0].texts == (("premise", raw[0]["premise"].decode()), ("hypothesis", raw[0]["hypothesis"].decode()))
    assert all(e.label is None for e in mnli.read("test_matched")) and mnli.read("ax")
    mrpc = task(name="tfds:glue/mrpc")
    assert mrpc.labels == ("0", "1") and mrpc.words == tuple(tfds.builder("glue/mrpc").info.features["label"].names)


def test_a_published_bert_finetunes_and_frames_pairs_as_its_tokenizer(tmp_path, capsys):
  """A Hugging Face BERT brought in with `convert --from-hf` fine-tunes from its directory, and a pair is framed as
  its own tokenizer frames it ([CLS] A [SEP] B [SEP], token types 0 then 1, the longer text cut first)."""
  torch = pytest.importorskip("torch")
  pytest.importorskip("transformers")
  from hf_helpers import hf_bert, hf_corpus

  from bert_jax.data import tokenizer as tokenizer_lib

  _, documents = hf_corpus(tmp_path)
  hf_dir = tmp_path / "hf"
  hf_dir.mkdir()
  torch.manual_seed(0)
  hf, model = hf_bert(hf_dir, documents)
  model.save_pretrained(str(hf_dir))
  assert cli.main(["convert", "--from-hf", str(hf_dir), "--output", str(tmp_path / "imported")]) == 0
  files = lines_task(tmp_path, 32, seed=4)
  assert cli.main(finetune_argv(tmp_path / "imported", tmp_path / "ft", files, "--config.task.epochs=1")) == 0
  assert "new: classifier/bias (1), classifier/kernel (1)" in capsys.readouterr().err

  config = json.loads((tmp_path / "ft" / "config.json").read_text())
  tokenizer = tokenizer_lib.load(config["data"]["tokenizer"])
  first, second = documents[0][:2], documents[1][:2]
  for a, b, length in ((first[0], second[0], 64), (first[0] + " " + first[1], second[0], 20)):
    ids, types, mask = classification.frame(tokenizer.encode([a, b]), tokenizer, length, "bert")
    expected = hf(a, b, max_length=length, truncation="longest_first", padding="max_length")
    assert ids.tolist() == expected["input_ids"] and types.tolist() == expected["token_type_ids"]
    assert mask.tolist() == expected["attention_mask"]


PRETRAINING = {"bart_tiny": ["--config.model.vocab_size=64", "--config.data.character_coverage=1.0"],
               "gpt2_tiny": ["--config.model.vocab_size=300"],  # GPT-2: a byte-level BPE of 300 ids
               "distilbert_tiny": ["--config.model.vocab_size=64", "--config.data.character_coverage=1.0",
                                   "--config.objective.teacher=", "--config.objective.alpha_mlm=1",
                                   "--config.eval.every=0"]}


@pytest.mark.parametrize("name", list(PRETRAINING))
def test_bart_gpt2_and_distilbert_finetune_learn_predict_and_export(name, tmp_path, capsys):
  corpus = write_corpus(tmp_path / "corpus.txt")
  assert cli.main(["train", "--config", name, "--workdir", str(tmp_path / "run"), f"--config.data.source={corpus}",
                   *PRETRAINING[name], "--config.train.steps=2", "--config.data.eval_tokens=0",
                   "--config.checkpoint.every=2"]) == 0
  files = lines_task(tmp_path, 256, seed=4)
  workdir = tmp_path / "ft"
  capsys.readouterr()
  assert cli.main(finetune_argv(tmp_path / "run", workdir, files, "--config.task.epochs=4",
                                "--config.optimizer.learning_rate=3e-3")) == 0
  new = re.search(r"new: (.*?); left out", capsys.readouterr().err).group(1)
  config = json.loads((workdir / "config.json").read_text())
  if name == "bart_tiny":  # the encoder and decoder carried over; fairseq's recipe
    assert new == "classifier/dense (2), classifier/out_proj (2)" and config["objective"]["framing"] == "bart"
    assert (config["train"]["clip_norm"], config["optimizer"]["b2"], config["model"]["attention_dropout"]) == (
        0.0, 0.98, 0.1)
  elif name == "gpt2_tiny":  # transformers' score: one matrix, no bias; GPT-1's warm-up, 0.2% of 32 steps
    assert new == "classifier/kernel (1)" and config["objective"]["framing"] == "gpt2"
    assert config["optimizer"]["warmup_steps"] == 0
  else:  # a student trained without a teacher, fine-tuned as BERT is: pre_classifier and classifier from [CLS]
    assert new == "classifier/dense (2), classifier/out_proj (2)" and config["objective"]["name"] == "classification"
  records = {int(p.stem): json.loads(p.read_text()) for p in (workdir / "eval").glob("*.json")}
  assert records[max(records)]["accuracy"] > 0.9, records
  rows = (workdir / "predictions" / "test.tsv").read_text().splitlines()
  assert len(rows) == 17 and {r.split("\t")[1] for r in rows[1:]} <= {"no", "yes"}

  assert cli.main(["predict", "--workdir", str(workdir), "--text", "some actors and a good plot", "--json"]) == 0
  predicted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert predicted["output"] == "yes", predicted
  export_predicts_as_we_do(workdir, tmp_path / "hf", "a good plot\tit was", capsys)
  if name == "gpt2_tiny":
    exported = json.loads((tmp_path / "hf" / "config.json").read_text())
    vocabulary = json.loads((tmp_path / "hf" / "tokenizer.json").read_text())["model"]["vocab"]
    assert exported["eos_token_id"] == exported["bos_token_id"] == vocabulary["<|endoftext|>"]  # not GPT-2's 50256


def export_predicts_as_we_do(workdir: Path, output: Path, pair: str, capsys) -> None:
  """The fine-tuned classifier exported with its tokenizer: transformers frames `pair` as fine-tuning did and gives
  the probabilities `predict` gives (the pair within the 16 tokens fine-tuning framed: predict cuts longer ones)."""
  import torch
  import transformers

  step = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert cli.main(["convert", "--to-hf", "--config", str(workdir / "config.json"), "--params",
                   str(workdir / "checkpoints" / str(step)), "--output", str(output)]) == 0
  tokenizer = transformers.AutoTokenizer.from_pretrained(output)
  model = transformers.AutoModelForSequenceClassification.from_pretrained(output).eval()
  encoded = tokenizer(*pair.split("\t"), return_tensors="pt")
  assert encoded["input_ids"].shape[1] <= 16
  with torch.no_grad():
    probabilities = torch.softmax(model(**encoded).logits, -1)[0]
  capsys.readouterr()
  assert cli.main(["predict", "--workdir", str(workdir), "--step", str(step), "--text", pair, "--json"]) == 0
  ours = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["predictions"][0]["candidates"]
  assert model.config.id2label[int(probabilities.argmax())] == ours[0]["token"]
  np.testing.assert_allclose(float(probabilities.max()), ours[0]["probability"], atol=1e-4)
