"""Text sources behind one interface: a `Source` yields documents, each a list of sentences.

data.source names one of:
  demo          the English documentation that ships with CPython (pydoc_data.topics): no download
  PATH          a text file, a directory (every file below it) or a glob; data.text_format says how to read it:
                'sentences'      one sentence per line, a blank line between documents (BERT's convention)
                'double_spaced'  lines of running text, two or more blank lines in a row between documents: a
                                 lone blank line is only spacing, as in text extracted from PDFs, which puts one
                                 after every line (and two or more between paragraphs, pages or files joined)
                'documents'      one document per line
                'files'          one document per file (its lines running text)
  jsonl:PATH    JSON lines (PATH may be a glob); the document is the record's data.jsonl_field
  tfds:NAME     a TFDS dataset (wikipedia/20230601.en, c4/en, ...) already prepared in data.tfds_data_dir;
                split data.tfds_split, text feature data.jsonl_field
Running text (the double_spaced, documents and files formats, JSON lines, TFDS, the demo's prose) is cut into
sentences at line breaks, after . ! ? followed by whitespace, and after 。！？.

Lines that are not valid UTF-8 are skipped and counted, afresh on each pass over the source; `skipped_report()`
names how many the last pass skipped and where the first one was (prepare and the tokenizer command print it).
Malformed JSON fails naming the file and line.
"""

from collections.abc import Iterator
import json
import re
import sys
from typing import Any

from bert_jax.errors import UserError
from bert_jax.files import storage
from bert_jax.files.workdir import resolve

TEXT_FORMATS = ("sentences", "double_spaced", "documents", "files")
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")
HEADING_RULE = re.compile(r"^\s*([*=\-~^#])\1{2,}\s*$")
DEMO_DOCUMENT_CHARS = 1000  # the demo's sections are cut into documents of about this many characters


def absolute_spec(spec: str) -> str:
  """data.source with its local path made absolute (globs stay globs); demo, synthetic, tfds:NAME and URLs as
  given."""
  prefix = "jsonl:" if spec.startswith("jsonl:") else ""
  if spec in ("demo", "synthetic") or spec.startswith("tfds:"):
    return spec
  return prefix + resolve(spec[len(prefix):])


def split_sentences(text: str) -> list[str]:
  return [s.strip() for line in text.splitlines() for s in SENTENCE_BREAK.split(line) if s.strip()]


class Source:
  """One corpus named by config.data; errors about the source itself are raised here, before any work."""

  def __init__(self, data_config: Any):
    self.spec = data_config.source
    self.text_format = data_config.text_format
    self.field = data_config.jsonl_field
    self.skipped_lines = 0
    self.first_skipped = ""
    self.sentence_counts = [0, 0]  # documents read by the last pass over text files, and those of one sentence
    if self.text_format not in TEXT_FORMATS:
      raise UserError(f"data.text_format must be one of {', '.join(TEXT_FORMATS)}, got '{self.text_format}'")
    if self.spec == "synthetic":
      raise UserError("data.source=synthetic generates random batches and has no text to read")
    self.files: list[storage.Path]
    if self.spec == "demo":
      self.kind, self.files = "demo", []
    elif self.spec.startswith("tfds:"):
      self.kind, self.files = "tfds", []
      self.builder = tfds_builder(self.spec[len("tfds:"):], data_config.tfds_data_dir)
      self.split = data_config.tfds_split
    elif self.spec.startswith("jsonl:"):
      self.kind, self.files = "jsonl", _expand(self.spec[len("jsonl:"):])
    else:
      self.kind, self.files = "text", _expand(self.spec)

  def documents(self) -> Iterator[list[str]]:
    """Non-empty documents in source order; a new pass, with its own count of skipped lines."""
    self.new_pass()
    if self.kind == "demo":
      yield from _demo_documents()
    elif self.kind == "tfds":
      yield from self._tfds_documents()
    else:
      for number in range(len(self.files)):
        yield from self.file_documents(number)

  def new_pass(self) -> None:
    """Starts the counts of skipped lines and one-line documents afresh."""
    self.skipped_lines, self.first_skipped, self.sentence_counts = 0, "", [0, 0]

  def file_documents(self, number: int) -> Iterator[list[str]]:
    """The non-empty documents of the source's file `number` (text or JSON lines), counted into this pass."""
    path = self.files[number]
    yield from self._jsonl_documents(path) if self.kind == "jsonl" else self._text_documents(path)

  def sentences(self) -> Iterator[str]:
    for document in self.documents():
      yield from document

  def fingerprint(self) -> dict:
    """What the prepared data depends on: a change here makes old prepared data stale."""
    found = {"source": self.spec, "text_format": self.text_format}
    if self.kind in ("jsonl", "tfds"):
      found["field"] = self.field
    if self.kind == "tfds":
      found.update(split=self.split, version=str(self.builder.version), data_dir=str(self.builder.data_dir))
    if self.kind == "demo":
      found["python"] = "{}.{}".format(*sys.version_info[:2])
    found["files"] = [storage.fingerprint(p) for p in self.files]
    return found

  def skipped_report(self) -> str | None:
    if not self.skipped_lines:
      return None
    return (f"warning: skipped {self.skipped_lines} line(s) that are not valid UTF-8 "
            f"(the first at {self.first_skipped})")

  def layout_hint(self) -> str | None:
    """A warning when nearly every document of the last pass was one line: a blank line after every line."""
    documents, single = self.sentence_counts
    if self.text_format != "sentences" or documents < 16 or single < 0.9 * documents:
      return None
    return (f"warning: {single} of the {documents} documents are one line each; if the text has a blank line after "
            "every line (as text extracted from PDFs does), set data.text_format=double_spaced (or files)")

  def _lines(self, path: storage.Path) -> Iterator[tuple[int, str]]:
    with storage.open_file(path, "rb") as f:
      for number, raw in enumerate(f, 1):
        try:
          line = raw.decode("utf-8")
        except UnicodeDecodeError:
          self.skipped_lines += 1
          self.first_skipped = self.first_skipped or f"{path}:{number}"
          continue
        yield number, line.lstrip("\ufeff").rstrip("\r\n")

  def _text_documents(self, path: storage.Path) -> Iterator[list[str]]:
    if self.text_format in ("documents", "files"):
      document = []
      for _, line in self._lines(path):
        document.extend(split_sentences(line))
        if document and self.text_format == "documents":
          yield document
          document = []
      if document:
        yield document
      return
    running = self.text_format == "double_spaced"
    document, blank = [], 0
    for _, line in self._lines(path):
      if line.strip():
        document.extend(split_sentences(line) if running else [line.strip()])
        blank = 0
        continue
      blank += 1
      if document and blank >= (2 if running else 1):
        yield from self._counted(document)
        document = []
    if document:
      yield from self._counted(document)

  def _counted(self, document: list[str]) -> Iterator[list[str]]:
    self.sentence_counts[0] += 1
    self.sentence_counts[1] += len(document) == 1
    yield document

  def _jsonl_documents(self, path: storage.Path) -> Iterator[list[str]]:
    for number, line in self._lines(path):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise UserError(f"{path}:{number} is not valid JSON ({e.msg})") from None
      if not isinstance(record, dict) or not isinstance(record.get(self.field), str):
        raise UserError(f"{path}:{number} has no text field '{self.field}'; set data.jsonl_field to the field "
                        "that holds the document")
      sentences = split_sentences(record[self.field])
      if sentences:
        yield sentences

  def _tfds_documents(self) -> Iterator[list[str]]:
    import tensorflow_datasets as tfds

    features = self.builder.info.features
    if self.field not in features:
      raise UserError(f"TFDS dataset {self.builder.name} has no feature '{self.field}' (it has: "
                      f"{', '.join(features)}); set data.jsonl_field")
    if self.split not in self.builder.info.splits:
      raise UserError(f"TFDS dataset {self.builder.name} has no split '{self.split}' (it has: "
                      f"{', '.join(self.builder.info.splits)}); set data.tfds_split")
    dataset = self.builder.as_dataset(split=self.split, shuffle_files=False)
    for number, record in enumerate(tfds.as_numpy(dataset)):
      try:
        text = record[self.field].decode("utf-8")
      except UnicodeDecodeError:
        self.skipped_lines += 1
        self.first_skipped = self.first_skipped or f"{self.builder.name}[{self.split}] record {number}"
        continue
      sentences = split_sentences(text)
      if sentences:
        yield sentences


def _expand(pattern: str) -> list[storage.Path]:
  path = storage.path(pattern)
  if path.is_dir():
    files = storage.files_below(path)
  elif path.is_file():
    files = [path]
  else:
    files = storage.glob(pattern)
  if not files:
    raise UserError(f"data.source '{pattern}' matches no files; give a text file, a directory, a glob, "
                    "jsonl:PATH, tfds:NAME or demo")
  return files


def tfds_builder(name: str, data_dir: str):
  import tensorflow_datasets as tfds

  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(f"TFDS has no dataset named '{name}'; see https://www.tensorflow.org/datasets/catalog") from None
  if not builder.is_prepared():
    where = f" --data_dir {data_dir}" if data_dir else ""
    root = storage.path(builder.data_dir).parent.parent
    raise UserError(f"TFDS dataset '{name}' is not prepared in {root}; prepare it with "
                    f"`tfds build {name}{where}` (or point data.tfds_data_dir at where it is)")
  return builder


def _demo_text() -> dict[str, str]:
  try:
    from pydoc_data.topics import topics
  except ImportError:
    raise UserError("the demo corpus needs CPython's pydoc_data module, which this Python lacks; set "
                    "data.source to a text file") from None
  return topics


def _demo_documents() -> Iterator[list[str]]:
  topics = _demo_text()
  for name in sorted(topics):
    yield from _demo_topic_documents(topics[name])


def demo_topics() -> dict[str, list[str]]:
  """The demo corpus by topic: each topic's sentences in order (the demo fine-tuning task)."""
  return {name: [sentence for document in _demo_topic_documents(text) for sentence in document]
          for name, text in _demo_text().items()}


def _demo_topic_documents(text: str) -> Iterator[list[str]]:
  """A topic's sections cut into documents of about DEMO_DOCUMENT_CHARS; code blocks give one sentence a line."""
  document: list[str] = []
  size = 0
  for paragraph in re.split(r"\n\s*\n", text):
    lines = [line for line in paragraph.splitlines() if line.strip()]
    heading = any(HEADING_RULE.match(line) for line in lines)
    lines = [line for line in lines if not HEADING_RULE.match(line)]
    if (heading or size >= DEMO_DOCUMENT_CHARS) and document:
      yield document
      document, size = [], 0
    if all(line.startswith("   ") for line in lines):
      sentences = [line.strip() for line in lines]
    else:
      sentences = split_sentences(" ".join(line.strip() for line in lines))
    document.extend(sentences)
    size += sum(len(s) for s in sentences)
  if document:
    yield document
