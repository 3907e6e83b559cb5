"""Every path of run data goes through the file layer (bert_jax/files/storage.py), so a gs:// workdir stays a URL.

An AST scan finds no pathlib, builtin open, glob, os.path.join, shutil or os file call outside the layer but for a
short list of paths that are not run data; a short run with a gs:// workdir (fsspec's in-memory filesystem standing
in for the bucket) touches no local path of the run and writes the run's files into the bucket."""

import ast
import builtins
from pathlib import Path

import fsspec
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem
from fsspec.registry import _registry as fsspec_implementations
import numpy as np
import pytest

from bert_jax.files import storage

PACKAGE = Path(__file__).resolve().parent.parent / "bert_jax"
LAYER = "files/"  # the layer: URLs through epath, local files written whole with os.rename, the run lock
FILE_CALLS = {"open", "os.open", "os.fdopen", "io.open", "glob.glob", "glob.iglob", "os.path.join", "os.listdir",
              "os.makedirs", "os.mkdir", "os.remove", "os.unlink", "os.rename", "os.replace", "os.walk", "os.scandir",
              "os.stat"}
FILE_MODULES = {"pathlib", "glob", "shutil"}
ALLOWED = {  # (module, what): why it is not run data
    ("parallel.py", "os.path.join"): "the XLA compilation cache, a local cache of this machine",
    ("config.py", "pathlib"): "config files are Python modules imported from local disk, as big_vision's are",
    ("cli.py", "glob.glob"): "finds the accelerators attached to this machine (/sys/bus/pci, /dev) before JAX starts",
    ("cli.py", "open"): "reads the PCI vendor ids of this machine's devices",
    ("cli.py", "glob"): "the module of glob.glob above",
    ("bench/worker.py", "open"): "reads /proc/self/status for peak memory",
    ("bench/worker.py", "os.fdopen"): "its reply pipe to the parent",
    ("bench/run.py", "os.path.join"): "a scratch file in a temporary directory of the benchmark",
    ("bench/torch_reference.py", "open"): "the exported weights' configs in the benchmark's temporary directory",
}


def dotted(node: ast.AST) -> str:
  if isinstance(node, ast.Name):
    return node.id
  if isinstance(node, ast.Attribute):
    return f"{dotted(node.value)}.{node.attr}"
  return ""


def file_uses(path: Path) -> set[str]:
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names if alias.name in FILE_MODULES}
    elif isinstance(node, ast.ImportFrom) and node.module in FILE_MODULES:
      found.add(node.module)
    elif isinstance(node, ast.Call) and dotted(node.func) in FILE_CALLS:
      found.add(dotted(node.func))
  return found


def test_no_module_touches_run_paths_outside_the_layer():
  wrong = []
  for path in sorted(PACKAGE.rglob("*.py")):
    module = path.relative_to(PACKAGE).as_posix()
    if not module.startswith(LAYER):
      wrong += [f"{module}: {use}" for use in sorted(file_uses(path)) if (module, use) not in ALLOWED]
  assert wrong == []


def test_the_scan_sees_each_kind_of_file_use(tmp_path):
  probe = tmp_path / "probe.py"
  probe.write_text("import glob\nfrom pathlib import Path\nimport os\nopen('x')\nos.path.join('a', 'b')\n"
                   "glob.glob('*')\nos.rename('a', 'b')\nimport shutil\n")
  assert file_uses(probe) == {"glob", "pathlib", "open", "os.path.join", "glob.glob", "os.rename", "shutil"}


def test_every_allowance_is_still_needed():
  for module, use in ALLOWED:
    assert use in file_uses(PACKAGE / module), f"{module} no longer uses {use}; remove it from ALLOWED"


class Bucket(MemoryFileSystem):
  """gs:// in memory, for fsspec (and so for epath with EPATH_USE_TF=false); it records every path it is given."""

  protocol = ("gs", "gcs")
  root_marker = ""
  store: dict = {}
  pseudo_dirs = [""]
  seen: list = []

  @classmethod
  def _strip_protocol(cls, path):
    path = str(path)
    cls.seen.append(path)
    for scheme in ("gs://", "gcs://"):
      path = path.removeprefix(scheme)
    return path.rstrip("/")


@pytest.fixture
def bucket(monkeypatch):
  """gs:// served by Bucket; every path epath's local backend and builtins.open see is recorded in `local`."""
  from etils.epath import backend, gpath

  monkeypatch.setenv("EPATH_USE_TF", "false")
  monkeypatch.setattr(Bucket, "store", {})
  monkeypatch.setattr(Bucket, "seen", [])
  for protocol in Bucket.protocol:
    fsspec.register_implementation(protocol, Bucket, clobber=True)
  gpath._is_tf_installed.cache_clear()
  backend.fsspec_backend._get_filesystem.cache_clear()
  local = []
  for name in ("open", "exists", "isdir", "listdir", "glob", "walk", "makedirs", "mkdir", "rmtree", "remove",
               "rename", "replace", "copy", "stat"):
    method = getattr(backend.os_backend, name)
    monkeypatch.setattr(backend.os_backend, name,
                        lambda path, *a, _method=method, **k: (local.append(str(path)), _method(path, *a, **k))[1])
  real_open = builtins.open
  monkeypatch.setattr(builtins, "open", lambda file, *a, **k: (local.append(str(file)), real_open(file, *a, **k))[1])
  yield local
  gpath._is_tf_installed.cache_clear()
  backend.fsspec_backend._get_filesystem.cache_clear()
  for protocol in Bucket.protocol:
    fsspec_implementations.pop(protocol, None)


@pytest.mark.slow
def test_a_gs_workdir_never_becomes_a_local_path(bucket, tmp_path, monkeypatch):
  from data_helpers import WORDS, tiny_config

  from bert_jax.data import pipeline, records
  from bert_jax.data.tf_cpu import tf
  from bert_jax.objectives import get_objective

  rng = np.random.default_rng(0)
  text = "\n".join(" ".join(rng.choice(WORDS, 8)) + "." + ("\n" if i % 5 == 4 else "") for i in range(400))
  Bucket.store["b/corpus/part-0.txt"] = MemoryFile(None, None, text.encode())
  monkeypatch.chdir(tmp_path)
  config = tiny_config("bert_tiny", "data.source=gs://b/corpus/*.txt", "model.vocab_size=60", "data.shards=2",
                       "data.eval_documents=4", "train.batch_size=4")
  pipeline.prepare_if_needed(config, "gs://b/run")
  dataset = pipeline.train_dataset(config, get_objective(config), "gs://b/run")
  iterator = iter(dataset)
  first = next(iterator)
  records.write_position(tf.train.Checkpoint(iterator=iterator), storage.path("gs://b/run/position/p"))
  expected = next(iterator)["input_ids"].numpy()
  iterator = iter(dataset)
  records.read_position(tf.train.Checkpoint(iterator=iterator), storage.path("gs://b/run/position/p"))
  assert (next(iterator)["input_ids"].numpy() == expected).all() and first["input_ids"].shape == (4, 64)

  assert [p for p in bucket if "gs:" in p or p.startswith("b/")] == []  # no bucket path went to the local disk
  assert not any(tmp_path.iterdir())
  stored = set(Bucket.store)
  assert {"b/run/tokenizer/spm.model", "b/run/tokenizer/tokenizer.json", "b/run/data/metadata.json",
          "b/run/data/train-00000-of-00002.tfrecord", "b/run/position/p.index"} <= stored, sorted(stored)
  assert any(p.startswith("gs://b/run/data/") for p in Bucket.seen)
