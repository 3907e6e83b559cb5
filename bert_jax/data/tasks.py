"""Fine-tuning tasks: labelled examples from the GLUE benchmark's files, users' own files, or the built-in demo task.

config.task.name names one of:
  glue/NAME  NAME in cola sst2 mrpc qqp stsb mnli qnli rte wnli: the TSV files as the benchmark distributes them
             (download_glue_data.py's layout) in task.data_dir, the directory holding CoLA/, SST-2/, ... or the
             task's own directory; MNLI's test splits include the diagnostic set (diagnostic/diagnostic.tsv, AX)
  tfds:glue/NAME  the same task from TFDS's glue/NAME, prepared in task.data_dir (empty: TFDS's default)
  demo       built in, no download: do two passages of CPython's documentation (the demo corpus) come from the
             same topic? Pairs of passages, half from one topic; every fifth passage of a topic is in the dev split
  squad      SQuAD v1.1 or v2.0: train-v1.1.json and dev-v1.1.json (or v2.0's) in task.data_dir, or the files
             task.train and task.dev (bert_jax/data/squad.py reads them)
  files      your own data: task.train, task.dev, task.test (.tsv, .csv or .jsonl) with the columns task.text_a,
             task.text_b (empty: single texts) and task.label; task.kind classification (labels task.labels,
             comma-separated, or those seen in training, sorted) or regression
An example's texts keep their field names (GLUE's as TFDS names them), which T5's text-to-text format writes.
task.augmented, a JSON-lines file `bert-jax augment` wrote for the task, replaces its training split (TinyBERT's
augmented examples, bert_jax/augment.py).
"""

from collections.abc import Callable
import csv
import dataclasses
import json
import random
import sys
from typing import Any, Literal

from bert_jax.errors import UserError
from bert_jax.files import storage

KINDS = ("classification", "regression")
DEMO_PASSAGE_CHARS = 250  # the demo task's passages: consecutive sentences of a topic, about this long


@dataclasses.dataclass(frozen=True)
class Example:
  guid: str
  texts: tuple[tuple[str, str], ...]  # (field name, text): one text, or a pair
  label: int | float | None  # a label index, a score (regression), or None (a test split)


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  kind: str  # classification | regression | span (extractive question answering)
  labels: tuple[str, ...]  # label names in index order (none for regression)
  metrics: tuple[str, ...]  # bert_jax.scores names; the first is the one checkpoint.best_metric follows
  eval_splits: tuple[str, ...]  # the first is "the" dev split; the others' metrics are prefixed with their name
  test_splits: tuple[str, ...]
  read: Callable[[str], list[Any]]  # split name -> examples (Example; squad.Example for the span task)
  words: tuple[str, ...] = ()  # T5's label words, one per label
  submission: dict = dataclasses.field(default_factory=dict)  # test split -> the GLUE submission file's name


@dataclasses.dataclass(frozen=True)
class _Glue:
  directory: str
  fields: tuple[str, ...]  # TFDS feature names of the texts
  text_columns: tuple[Any, ...]  # header names, or column indexes in a file without a header
  label_column: Any
  labels: tuple[str, ...]
  words: tuple[str, ...]
  metrics: tuple[str, ...]
  submission: str
  headerless_train: bool = False  # CoLA's train and dev files have no header (its test file does)
  test_text_columns: tuple[Any, ...] = ()
  id_column: str = "index"


_PAIR = ("sentence1", "sentence2")
GLUE = {
    "cola": _Glue("CoLA", ("sentence",), (3,), 1, ("0", "1"), ("unacceptable", "acceptable"), ("matthews",), "CoLA",
                  headerless_train=True, test_text_columns=("sentence",)),
    "sst2": _Glue("SST-2", ("sentence",), ("sentence",), "label", ("0", "1"), ("negative", "positive"), ("accuracy",),
                  "SST-2"),
    "mrpc": _Glue("MRPC", _PAIR, ("#1 String", "#2 String"), "Quality", ("0", "1"), ("not_equivalent", "equivalent"),
                  ("f1", "accuracy"), "MRPC"),
    "qqp": _Glue("QQP", ("question1", "question2"), ("question1", "question2"), "is_duplicate", ("0", "1"),
                 ("not_duplicate", "duplicate"), ("f1", "accuracy"), "QQP", id_column="id"),
    "stsb": _Glue("STS-B", _PAIR, _PAIR, "score", (), (), ("pearson", "spearman"), "STS-B"),
    "mnli": _Glue("MNLI", ("premise", "hypothesis"), _PAIR, "gold_label", ("contradiction", "entailment", "neutral"),
                  ("contradiction", "entailment", "neutral"), ("accuracy",), "MNLI"),
    "qnli": _Glue("QNLI", ("question", "sentence"), ("question", "sentence"), "label", ("entailment", "not_entailment"),
                  ("entailment", "not_entailment"), ("accuracy",), "QNLI"),
    "rte": _Glue("RTE", _PAIR, _PAIR, "label", ("entailment", "not_entailment"), ("entailment", "not_entailment"),
                 ("accuracy",), "RTE"),
    "wnli": _Glue("WNLI", _PAIR, _PAIR, "label", ("0", "1"), ("not_entailment", "entailment"), ("accuracy",), "WNLI"),
}
MNLI_SPLITS = {"dev_matched": "dev_matched.tsv", "dev_mismatched": "dev_mismatched.tsv",
               "test_matched": "test_matched.tsv", "test_mismatched": "test_mismatched.tsv"}
MNLI_SUBMISSION = {"test_matched": "MNLI-m", "test_mismatched": "MNLI-mm", "ax": "AX"}


def load(task_config: Any) -> Task:
  """The task config.task names, its files checked to exist; its training split the examples of
  task.augmented where that names a file `bert-jax augment` wrote."""
  task = _named_task(task_config)
  augmented = task_config.get("augmented", "")
  return _with_augmented_training(task, augmented) if augmented else task


def _named_task(task_config: Any) -> Task:
  name = task_config.name
  if name.startswith("tfds:glue/"):
    return _tfds_glue_task(name[len("tfds:glue/"):], task_config.data_dir)
  if name.startswith("glue/"):
    return _glue_task(name[len("glue/"):], task_config.data_dir)
  if name == "demo":
    return _demo_task()
  if name == "files":
    return _files_task(task_config)
  if name == "squad":
    return _squad_task(task_config)
  raise UserError(f"task.name must be glue/NAME ({', '.join(GLUE)}), squad, demo or files, got {name!r}")


def _with_augmented_training(task: Task, augmented: str) -> Task:
  path = storage.path(augmented)
  if not path.is_file():
    raise UserError(f"task.augmented {path} does not exist; write it with `bert-jax augment --task {task.name} "
                    f"--output {augmented}`")
  original = task.read

  def read(split: str) -> list:
    if split != "train":
      return original(split)
    with storage.open_file(path, "r") as f:
      rows = [json.loads(line) for line in f if line.strip()]
    for number, row in enumerate(rows, 1):
      if row.get("task") != task.name:
        raise UserError(f"{path} line {number} was written for task {row.get('task')!r}, not {task.name}; "
                        f"augment this task's training split with `bert-jax augment --task {task.name}`")
    return [Example(r["guid"], tuple(r["texts"].items()), r["label"]) for r in rows]

  return dataclasses.replace(task, read=read)


def _squad_task(task_config: Any) -> Task:
  from bert_jax.data import squad

  paths = {s: storage.path(task_config[s]) for s in ("train", "dev") if task_config[s]}
  if task_config.data_dir:
    root = storage.path(task_config.data_dir)
    for version in ("v2.0", "v1.1"):
      if not paths and (root / f"train-{version}.json").is_file():
        paths = {s: root / f"{s}-{version}.json" for s in ("train", "dev")}
  if "train" not in paths:
    raise UserError("task squad reads SQuAD's JSON files: set --task-dir to the directory holding train-v1.1.json and "
                    "dev-v1.1.json (or the v2.0 pair), or --config.task.train / --config.task.dev to the files")
  return Task("squad", "span", (), ("exact_match", "f1"), ("dev",) if "dev" in paths else (), (),
              lambda split: squad.read_squad(paths[split]))


def _glue_task(name: str, data_dir: str) -> Task:
  if name not in GLUE:
    raise UserError(f"unknown GLUE task {name!r}; choose one of {', '.join(GLUE)}")
  spec = GLUE[name]
  if not data_dir:
    raise UserError(f"glue/{name} reads the GLUE files: set --task-dir (task.data_dir) to the directory holding "
                    f"{spec.directory}/ (download_glue_data.py's output)")
  root = storage.path(data_dir)
  directory = root / spec.directory if (root / spec.directory).is_dir() else root
  files = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"} if name != "mnli" else {
      "train": "train.tsv", **MNLI_SPLITS}
  if not (directory / "train.tsv").is_file():
    raise UserError(f"{directory / 'train.tsv'} not found; task.data_dir must hold {spec.directory}/train.tsv")
  paths = {split: directory / file for split, file in files.items()}
  if name == "mnli":
    candidates = [d / "diagnostic" / "diagnostic.tsv" for d in (root, directory.parent)]
    candidates.append(directory / "diagnostic.tsv")
    paths["ax"] = next((p for p in candidates if p.is_file()), candidates[0])
  tests = tuple(s for s in paths if s.startswith("test") or s == "ax")
  present = tuple(s for s in tests if paths[s].is_file())
  evals = ("dev_matched", "dev_mismatched") if name == "mnli" else ("dev",)

  def read(split: str) -> list[Example]:
    path = paths[split]
    if not path.is_file():
      raise UserError(f"{path} not found; the GLUE directory is incomplete (download_glue_data.py writes it)")
    test = split in tests
    text_columns = spec.test_text_columns or spec.text_columns if test else spec.text_columns
    headerless = spec.headerless_train and not test
    rows = _read_table(path, "\t", header=not headerless)
    examples = []
    for number, row in enumerate(rows):
      columns = ("sentence1", "sentence2") if split == "ax" else text_columns
      cells = tuple(zip(spec.fields, (_cell(row, c) for c in columns)))
      label = None if test else _label(_cell(row, spec.label_column), spec.labels, path)
      if any(t is None for _, t in cells) or (not test and label is None):
        continue  # QQP's train file has a few broken lines, as the benchmark ships it
      texts = tuple((field, text) for field, text in cells if text is not None)  # all of them, here
      guid = str(row.get(spec.id_column, number)) if isinstance(row, dict) else str(number)
      examples.append(Example(guid, texts, label))
    return examples

  submission = MNLI_SUBMISSION if name == "mnli" else {"test": spec.submission}
  return Task(f"glue/{name}", "regression" if not spec.labels else "classification", spec.labels, spec.metrics,
              evals, present, read, spec.words, {s: submission[s] for s in present})


TFDS_SPLITS = {"dev": "validation", "dev_matched": "validation_matched", "dev_mismatched": "validation_mismatched"}


def _tfds_glue_task(name: str, data_dir: str) -> Task:
  """A GLUE task from TFDS (glue/NAME prepared in data_dir, or TFDS's default directory): the same task as its TSV
  files give, TFDS's label order mapped to theirs by the label names."""
  if name not in GLUE:
    raise UserError(f"unknown GLUE task {name!r}; choose one of {', '.join(GLUE)}")
  from bert_jax.data import sources

  spec = GLUE[name]
  builder = sources.tfds_builder(f"glue/{name}", data_dir)
  evals = ("dev_matched", "dev_mismatched") if name == "mnli" else ("dev",)
  tests = ("test_matched", "test_mismatched", "ax") if name == "mnli" else ("test",)
  names = builder.info.features["label"].names if spec.labels else []

  def read(split: str) -> list[Example]:
    import tensorflow_datasets as tfds

    source = sources.tfds_builder("glue/ax", data_dir) if split == "ax" else builder
    examples = []
    for record in tfds.as_numpy(source.as_dataset(split="test" if split == "ax" else TFDS_SPLITS.get(split, split))):
      texts = tuple((field, record[field].decode("utf-8")) for field in spec.fields)
      label = record["label"]
      if split in tests or label < 0:  # TFDS marks a test example's label -1
        label = None
      elif names:
        label = spec.words.index(names[int(label)])
      else:
        label = float(label)
      examples.append(Example(str(record["idx"]), texts, label))
    return examples

  submission = MNLI_SUBMISSION if name == "mnli" else {"test": spec.submission}
  return Task(f"glue/{name}", "regression" if not spec.labels else "classification", spec.labels, spec.metrics,
              evals, tests, read, spec.words, submission)


def _read_table(path: storage.Path, delimiter: str, header: bool) -> list:
  csv.field_size_limit(sys.maxsize)
  with storage.open_file(path, "r") as f:
    quoting: Literal[0, 3] = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL  # typeshed's Literal type
    if header:
      return list(csv.DictReader(f, delimiter=delimiter, quoting=quoting))
    return list(csv.reader(f, delimiter=delimiter, quoting=quoting))


def _cell(row: Any, column: Any) -> str | None:
  if isinstance(row, dict):
    value = row.get(column)
  else:
    value = row[column] if column < len(row) else None
  return None if value is None else str(value)


def _label(value: str | None, labels: tuple[str, ...], path: storage.Path) -> int | float | None:
  if value is None:
    return None
  if not labels:
    try:
      return float(value)
    except ValueError:
      raise UserError(f"{path}: the score {value!r} is not a number") from None
  if value not in labels:
    raise UserError(f"{path}: label {value!r} is not one of {', '.join(labels)}")
  return labels.index(value)


def _files_task(task_config: Any) -> Task:
  if task_config.kind not in KINDS:
    raise UserError(f"task.kind must be one of {', '.join(KINDS)}, got {task_config.kind!r}")
  if not task_config.train:
    raise UserError("task.name=files reads your own data: set task.train (and task.dev, task.test) to .tsv, .csv "
                    "or .jsonl files")
  paths = {s: storage.path(task_config[s]) for s in ("train", "dev", "test") if task_config[s]}
  for split, path in paths.items():
    if not path.is_file():
      raise UserError(f"task.{split} file {path} does not exist")
  columns = tuple(c for c in (task_config.text_a, task_config.text_b) if c)
  regression = task_config.kind == "regression"

  settings = {task_config[key]: f"task.{key}" for key in ("label", "text_b", "text_a") if task_config[key]}

  def rows(split: str) -> list[dict]:
    path = paths[split]
    if path.suffix in (".jsonl", ".json"):
      with storage.open_file(path, "r") as f:
        table = [json.loads(line) for line in f if line.strip()]
    else:
      table = _read_table(path, "\t" if path.suffix == ".tsv" else ",", header=True)
    found = {column for row in table for column in row}
    for column in columns + (() if split == "test" else (task_config.label,)):
      if column not in found:
        raise UserError(f"{path} has no column {column!r} (its columns: {', '.join(map(repr, sorted(found)))}); "
                        f"set {settings[column]} to one of them")
    return table

  labels = tuple(s.strip() for s in task_config.labels.split(",") if s.strip())
  if not regression and not labels:
    labels = tuple(sorted({str(r.get(task_config.label)) for r in rows("train")} - {"None"}))

  def read(split: str) -> list[Example]:
    examples = []
    for number, row in enumerate(rows(split)):
      missing = [c for c in columns + (() if split == "test" else (task_config.label,)) if c not in row]
      if missing:
        raise UserError(f"{paths[split]} row {number + 1} has no column {missing[0]!r} "
                        f"({settings[missing[0]]}); give every row a value for it")
      raw = row.get(task_config.label)
      label = None if split == "test" or raw is None else _label(str(raw), labels, paths[split])
      examples.append(Example(str(row.get("id", number)), tuple((c, str(row[c])) for c in columns), label))
    return examples

  metrics = tuple(m.strip() for m in task_config.metrics.split(",") if m.strip()) or (
      ("pearson", "spearman") if regression else ("accuracy", "f1") if len(labels) == 2 else ("accuracy",))
  return Task("files", task_config.kind, () if regression else labels, metrics,
              ("dev",) if "dev" in paths else (), ("test",) if "test" in paths else (), read,
              tuple(label.replace(" ", "_") for label in labels))


def _demo_task() -> Task:
  from bert_jax.data import sources

  return Task("demo", "classification", ("different", "same"), ("accuracy", "f1"), ("dev",), (),
              lambda split: demo_pairs(split, sources.demo_topics()), words=("different", "same"))


def passages(sentences: list[str], chars: int = DEMO_PASSAGE_CHARS) -> list[str]:
  """Consecutive sentences joined into passages of at least `chars` characters (the last may be shorter)."""
  found, current = [], []
  for sentence in sentences:
    current.append(sentence)
    if sum(len(s) + 1 for s in current) > chars:
      found.append(" ".join(current))
      current = []
  return found + ([" ".join(current)] if current else [])


def demo_pairs(split: str, topics: dict[str, list[str]], dev_every: int = 5) -> list[Example]:
  """Each passage paired with the topic's next passage of its split (label same) and with a passage of another topic
  (label different). Every dev_every-th passage of a topic is in the dev split, the others in train."""
  if split not in ("train", "dev"):
    raise UserError(f"the demo task has train and dev splits, not {split!r}")
  chosen = {}
  for name in sorted(topics):
    found = [p for k, p in enumerate(passages(topics[name])) if (k % dev_every == dev_every - 1) == (split == "dev")]
    if len(found) >= 2:
      chosen[name] = found
  rng = random.Random(f"demo-{split}")
  examples = []
  for name, found in chosen.items():
    for k, passage in enumerate(found):
      other = rng.choice([n for n in chosen if n != name])
      pairs = ((found[(k + 1) % len(found)], 1), (rng.choice(chosen[other]), 0))
      for partner, label in pairs:
        examples.append(Example(f"{name}-{k}-{label}", (("passage1", passage), ("passage2", partner)), label))
  rng.shuffle(examples)
  return examples
