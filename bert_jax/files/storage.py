"""The one file layer for run data: every path a run reads or writes (workdir, tokenizer, prepared shards, sources,
eval output, TensorBoard, exports) is made here, as a local path or a URL (gs://, s3://, az://, hf://), and is
used through the same calls for both.

    p = storage.path(user_given)             # absolute local path, or the URL as given
    p / "data" / "metadata.json"             # joins stay URLs
    storage.glob("gs://b/corpus/*.txt")      # files matching a pattern, local or in a bucket
    with storage.open_file(p, "rb") as f: ...

The layer is etils.epath, which Orbax (checkpoints) already uses, so the run's files and its checkpoints go through
the same client. epath picks a backend per scheme, once per process:
  - TensorFlow's filesystem (tf.io.gfile) for URLs when TensorFlow is installed, as it is here: the default, and what
    a pod uses. Its GCS client authenticates through the TPU VM's service account and is the one tf.data reads
    shards with (data/records.py hands it URL strings), so one client serves the whole run.
  - fsspec (gcsfs for gs://) with EPATH_USE_TF=false: gcsfs honours STORAGE_EMULATOR_HOST and TensorFlow's client
    does not (its endpoint is compiled in), so the emulator test runs in this mode; tf.data then reads and writes
    records through this layer too (data/records.py), not through TensorFlow's filesystem.
Object stores have no atomic rename of a directory; `publish` (files/atomic.py) moves a directory's files one by one
and its completion marker last, so a reader that waits for the marker sees every file.
"""

import glob as glob_lib
import os
import re
import time
from typing import IO

from etils import epath

from bert_jax.errors import UserError

Path = epath.Path
SCHEMES = ("gs://", "s3://", "az://", "hf://")

try:  # fsspec mode: another process's new files (the metadata a waiting process polls for) must be seen at once
  import fsspec.config

  for _protocol in ("gs", "gcs", "s3", "az"):
    fsspec.config.conf.setdefault(_protocol, {}).setdefault("use_listings_cache", False)
except ImportError:
  pass


def is_url(path: str | os.PathLike) -> bool:
  return "://" in os.fspath(path)


def path(given: str | os.PathLike) -> epath.Path:
  """A URL as given; a local path made absolute (against the current directory, ~ expanded)."""
  text = os.fspath(given)
  if is_url(text):
    if not text.startswith(SCHEMES):
      raise UserError(f"{text}: only {', '.join(SCHEMES)} URLs and local paths are supported")
    return epath.Path(text)
  return epath.Path(os.path.abspath(os.path.expanduser(text)))


def tf_reads(given: str | os.PathLike) -> bool:
  """Whether TensorFlow's own filesystem reads and writes this path: local paths, and URLs unless this layer speaks
  to object storage through fsspec (EPATH_USE_TF=false)."""
  return not is_url(given) or os.environ.get("EPATH_USE_TF", "").lower() not in ("false", "no", "f", "0")


def open_file(given: str | os.PathLike, mode: str = "r") -> IO:
  return path(given).open(mode)


def size(given: str | os.PathLike) -> int | None:
  """The size of a file in bytes; None when there is no file."""
  p = path(given)
  return p.stat().length if p.is_file() else None


def fingerprint(given: str | os.PathLike) -> list:
  """[path, size, modification time] of a file: what tells a changed source apart."""
  p = path(given)
  if not is_url(p):
    found = os.stat(p)
    return [str(p), found.st_size, found.st_mtime_ns]
  found = p.stat()
  return [str(p), found.length, found.mtime]


def glob(pattern: str) -> list[epath.Path]:
  """The files (not directories) a pattern matches, sorted; ** matches any depth."""
  if is_url(pattern):
    fixed = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    if fixed == pattern:
      return [path(pattern)] if path(pattern).is_file() else []
    if "**" in pattern:
      raise UserError(f"{pattern}: ** cannot match in a bucket (each level is a listing); give the directory, "
                      "or * for each level")
    root = fixed.rpartition("/")[0]
    return sorted(p for p in path(root).glob(pattern[len(root) + 1:]) if p.is_file())
  found = glob_lib.glob(os.path.expanduser(pattern), recursive=True)
  return sorted(path(p) for p in found if os.path.isfile(p))


def files_below(directory: str | os.PathLike) -> list[epath.Path]:
  """Every file below a directory, at any depth, sorted."""
  top, found = path(directory), []
  for root, _, names in top.walk():
    root = str(root)
    if is_url(top) and not is_url(root):  # fsspec's walk leaves the scheme out
      root = str(top).partition("://")[0] + "://" + root.lstrip("/")
    found += [path(root) / name for name in names]
  return sorted(found)


class LineLog:
  """A text file that grows line by line (metrics.jsonl): appended to on local disk; in an object store, whose
  objects are written whole, written again whole on flush, at most every `interval` seconds, and on close."""

  def __init__(self, given: str | os.PathLike, interval: float = 10.0):
    self.path, self.interval = path(given), interval
    if is_url(self.path):
      self.file, self.text = None, self.path.read_text() if self.path.exists() else ""
      self.saved, self.written = self.text, time.monotonic()
    else:
      self.file = self.path.open("a")

  def write(self, text: str) -> None:
    if self.file is not None:
      self.file.write(text)
    else:
      self.text += text

  def flush(self, force: bool = False) -> None:
    if self.file is not None:
      self.file.flush()
    elif self.text != self.saved and (force or time.monotonic() - self.written >= self.interval):
      self.path.write_text(self.text)
      self.saved, self.written = self.text, time.monotonic()

  def close(self) -> None:
    if self.file is not None:
      self.file.close()
    else:
      self.flush(force=True)
