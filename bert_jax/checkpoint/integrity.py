"""A committed step's integrity: process 0 writes the size and SHA-256 of every file of the step (MANIFEST) once
Orbax has committed it, and a restore checks them first, so a missing, truncated or corrupt file is found before it
is read (Damaged). is_damage tells such a failure from a bug or a bad config when a restore fails for another
reason."""

from collections.abc import Iterator
import hashlib
import json

from etils import epath

MANIFEST = "bert_jax_sha256.json"  # sizes and SHA-256 of every file of a committed step, written by process 0


class Damaged(Exception):
  """A checkpoint with a missing, truncated or corrupt file."""


def short_error(error: BaseException) -> str:
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0][:160] if lines else ''}"


def _causes(error: BaseException) -> Iterator[BaseException]:
  current: BaseException | None = error
  while current is not None:
    yield current
    current = current.__cause__ or current.__context__


READ_FAILURES = ("error while reading", "error opening", "not_found", "data_loss", "out_of_range", "no such file",
                 "unexpected end", "truncated", "corrupt")


def is_damage(error: BaseException) -> bool:
  """Whether a failed restore means a missing, truncated or corrupt file (rather than a bug or a bad config)."""
  for cause in _causes(error):
    if isinstance(cause, (Damaged, FileNotFoundError, json.JSONDecodeError)):
      return True
    if type(cause).__name__ in ("DataLossError", "NotFoundError", "OutOfRangeError"):
      return True
    if any(words in str(cause).lower() for words in READ_FAILURES):
      return True
  return False


def _walk(directory: epath.Path):
  for path in sorted(directory.iterdir()):
    if path.is_dir():
      yield from _walk(path)
    else:
      yield path


def _files(step_dir: epath.Path) -> dict[str, epath.Path]:
  """The files of the step's items (Orbax may rewrite the step's own metadata files later)."""
  return {str(p.relative_to(step_dir)): p for p in _walk(step_dir) if p.parent != step_dir}


def _sha256(path: epath.Path) -> str:
  with path.open("rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(step_dir: epath.Path) -> None:
  """Sizes and SHA-256 of every file of a committed step, written whole and then renamed into the step."""
  manifest = {name: [path.stat().length, _sha256(path)] for name, path in _files(step_dir).items()}
  partial = step_dir / (MANIFEST + ".partial")
  partial.write_text(json.dumps(manifest, indent=0))
  partial.rename(step_dir / MANIFEST)


def verify(step_dir: epath.Path, items: tuple[str, ...] = ()) -> bool:
  """Raises Damaged when a file the manifest lists (under `items`, or all) is missing, of another size or another
  SHA-256; returns False when the step has no manifest (a crash between the commit and the manifest)."""
  path = step_dir / MANIFEST
  if not path.exists():
    return False
  try:
    manifest = json.loads(path.read_text())
  except ValueError as error:
    raise Damaged(f"{path} is unreadable ({error})") from None
  for name, (size, digest) in manifest.items():
    if items and name.split("/")[0] not in items:
      continue
    file = step_dir / name
    if not file.exists():
      raise Damaged(f"{file} is missing")
    if file.stat().length != size:
      raise Damaged(f"{file} is truncated ({file.stat().length} of {size} bytes)")
    if _sha256(file) != digest:
      raise Damaged(f"{file} is corrupt (its SHA-256 differs from the one written with it)")
  return True
