"""Files written whole: under a private name next to the target, then renamed into place, so a reader sees all of
one writer's files or none, and two writers never touch each other's files. A full disk is one RunError naming
the target; what was half-written is removed."""

import contextlib
import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from bert_jax.errors import RunError, is_disk_full


def private_name(target: Path) -> Path:
  """A name next to `target` that no other writer, process or thread, uses."""
  return target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")


def disk_full_error(target: Path, error: BaseException) -> RunError | None:
  if not is_disk_full(error):
    return None
  return RunError(f"{target}: no space left on device; free some space and run again")


@contextlib.contextmanager
def private_directory(target: Path) -> Iterator[Path]:
  """A new empty directory next to `target` to fill and then `publish`; removed when the block fails."""
  private = private_name(target)
  try:
    private.mkdir(parents=True)
    yield private
  except BaseException as error:
    shutil.rmtree(private, ignore_errors=True)
    if full := disk_full_error(target, error):
      raise full from None
    raise


def publish(private: Path, target: Path) -> bool:
  """Renames the directory `private` to `target` when `target` is missing or empty. When another writer's
  files are there already, removes `private` and returns False."""
  try:
    os.rename(private, target)
    return True
  except OSError as error:
    if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
      raise
  shutil.rmtree(private)
  return False


def write_bytes(path: Path, data: bytes) -> None:
  """Writes `path` whole (replacing it) or not at all."""
  partial = private_name(path)
  try:
    partial.write_bytes(data)
    os.replace(partial, path)
  except BaseException as error:
    partial.unlink(missing_ok=True)
    if full := disk_full_error(path, error):
      raise full from None
    raise
