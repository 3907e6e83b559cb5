"""Files written whole: under a private name next to the target, then renamed into place, so a reader sees all of
one writer's files or none, and two writers never touch each other's files. A full disk is one RunError naming
the target; what was half-written is removed. Paths are the file layer's (bert_jax/files/storage.py). An object store
has
neither directories nor a rename of one: there an object appears whole when its upload ends, a directory is written
in place, and readers wait for the file its writer writes last (metadata.json, tokenizer.json); two runs must not
prepare one bucket directory at once."""

from collections.abc import Iterator
import contextlib
import errno
import os
import uuid

from bert_jax.errors import RunError, is_disk_full
from bert_jax.files import storage


def private_name(target: storage.Path) -> storage.Path:
  """A name next to `target` that no other writer, process or thread, uses."""
  return target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")


def disk_full_error(target: storage.Path, error: BaseException) -> RunError | None:
  if not is_disk_full(error):
    return None
  return RunError(f"{target}: no space left on device; free some space and run again")


@contextlib.contextmanager
def private_directory(target: storage.Path) -> Iterator[storage.Path]:
  """A new empty directory next to `target` to fill and then `publish` (in an object store, `target` itself); removed
  when the block fails."""
  target = storage.path(target)
  private = target if storage.is_url(target) else private_name(target)
  try:
    private.mkdir(parents=True, exist_ok=True)
    yield private
  except BaseException as error:
    if private.exists():
      private.rmtree(missing_ok=True)
    if full := disk_full_error(target, error):
      raise full from None
    raise


def publish(private: storage.Path, target: storage.Path) -> bool:
  """Renames the directory `private` to `target` when `target` is missing or empty. When another writer's
  files are there already, removes `private` and returns False. (In an object store it was written in place.)"""
  if storage.is_url(target):
    return True
  try:
    os.rename(private, target)
    return True
  except OSError as error:
    if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
      raise
  private.rmtree()
  return False


def write_bytes(path: storage.Path, data: bytes) -> None:
  """Writes `path` whole (replacing it) or not at all."""
  path = storage.path(path)
  if storage.is_url(path):  # an object is visible only once its upload completes
    path.write_bytes(data)
    return
  partial = private_name(path)
  try:
    partial.write_bytes(data)
    os.replace(partial, path)
  except BaseException as error:
    partial.unlink(missing_ok=True)
    if full := disk_full_error(path, error):
      raise full from None
    raise
