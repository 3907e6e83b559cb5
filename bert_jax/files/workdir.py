"""A run's directory: paths resolved once at the command line's edge, and one writer at a time.

    workdir = resolve(args.workdir)          # absolute; a URL (gs://...) stays as it is
    with RunLock(workdir):                   # W/.lock while the run lives; a second run is refused
      ...
    save_config(config, workdir)             # W/config.json, replaced whole

The lock is a file created exclusively, holding the host, pid and start time of the process that holds it. A lock
whose process no longer runs on this host is stale and is taken over; one held on another host can only be removed
by hand (the message says how).
"""

import json
import os
import socket
from typing import Any

from etils import epath

from bert_jax.errors import UserError

LOCK = ".lock"


def resolve(path: str) -> str:
  """The absolute form of a local path, relative to the current directory; URLs unchanged; '' stays ''."""
  if not path or "://" in path:
    return path
  return os.path.abspath(os.path.expanduser(path))


def _start_time(pid: int) -> str | None:
  """The kernel's start time of a process (tells a reused pid apart), or None where /proc has none."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rpartition(")")[2].split()[19]
  except OSError:
    return None


def _alive(owner: dict) -> bool:
  try:
    os.kill(owner["pid"], 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  started = _start_time(owner["pid"])
  return started is None or owner.get("start") is None or started == owner["start"]


class RunLock:
  """W/.lock held by this process from `acquire()` (or `with`) to `release()`."""

  def __init__(self, workdir: str):
    self.path = epath.Path(workdir) / LOCK
    self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}
    self.held = False

  def _create(self) -> bool:
    text = json.dumps(self.owner)
    if "://" in str(self.path):  # object stores have no exclusive create: check, then write
      if self.path.exists():
        return False
      self.path.write_text(text)
      return True
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w") as f:
      f.write(text)
    return True

  def _holder(self) -> dict | None:
    try:
      return json.loads(self.path.read_text())
    except (FileNotFoundError, ValueError):
      return None

  def acquire(self) -> "RunLock":
    self.path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
      if self._create():
        self.held = True
        return self
      holder = self._holder()
      if holder is None:  # removed or half-written in between: look again
        continue
      if holder.get("host") == self.owner["host"] and not _alive(holder):
        self.path.unlink(missing_ok=True)  # the process that held it is gone
        continue
      where = "this machine" if holder.get("host") == self.owner["host"] else f"host {holder.get('host')}"
      raise UserError(f"{self.path.parent} is in use by another run (process {holder.get('pid')} on {where}); wait "
                      f"for it to finish or use another --workdir (if no run uses it, delete {self.path})")
    raise UserError(f"could not take {self.path}; another run keeps creating it; use another --workdir")

  def release(self) -> None:
    if self.held:
      self.held = False
      if self._holder() == self.owner:
        self.path.unlink(missing_ok=True)

  def __enter__(self) -> "RunLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def save_config(config: Any, workdir: str) -> None:
  """W/config.json, the run's whole config, written under another name and renamed into place."""
  path = epath.Path(workdir)
  path.mkdir(parents=True, exist_ok=True)
  partial = path / "config.json.partial"
  partial.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
  partial.replace(path / "config.json")
