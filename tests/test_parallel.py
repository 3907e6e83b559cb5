"""Mesh construction, logical rules and the input checks that stop a run before anything compiles."""

import jax
from jax.sharding import AxisType, PartitionSpec as P
import numpy as np
import pytest

from bert_jax import cli, config as config_lib, parallel
from bert_jax.errors import UserError
from bert_jax.train.trainer import Trainer

TINY = ["data.source=synthetic", "train.batch_size=16", "data.seq_len=32"]


def tiny_config(*overrides: str):
  return config_lib.load_config("bert_tiny", [f"--config.{o}" for o in (*TINY, *overrides)])


def test_mesh_sizes_resolve_the_rest():
  mesh = {"dcn": 1, "data": -1, "fsdp": 2, "tensor": 2}
  assert parallel.mesh_shape(mesh, 8) == {"dcn": 1, "data": 2, "fsdp": 2, "tensor": 2}
  assert parallel.mesh_shape({**mesh, "data": 2}, 8)["data"] == 2


@pytest.mark.parametrize("sizes, device_count, message", [
    ({"data": 3}, 8, "has 3 devices but 8 are available"),
    ({"data": -1, "fsdp": 3}, 8, "not divisible by 3"),
    ({"data": -1, "fsdp": -1}, 8, "at most one -1"),
    ({"data": 0}, 8, "must be positive"),
])
def test_bad_mesh_sizes(sizes, device_count, message):
  with pytest.raises(UserError, match=message):
    parallel.mesh_shape({"dcn": 1, "data": 1, "fsdp": 1, "tensor": 1, **sizes}, device_count)


def test_mesh_has_named_auto_axes_over_all_devices():
  mesh = parallel.make_mesh({"dcn": 1, "data": 2, "fsdp": 2, "tensor": -1})
  assert mesh.axis_names == parallel.MESH_AXES
  assert dict(mesh.shape) == {"dcn": 1, "data": 2, "fsdp": 2, "tensor": 2}
  assert mesh.axis_types == (AxisType.Auto,) * 4
  assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in jax.devices())


def test_dcn_needs_as_many_processes():
  with pytest.raises(UserError, match="mesh.dcn=2 must equal the number of processes"):
    parallel.make_mesh({"dcn": 2, "data": -1, "fsdp": 1, "tensor": 1})


def test_batch_rows_of_this_process():
  mesh = parallel.make_mesh({"dcn": 1, "data": 4, "fsdp": 1, "tensor": 2})
  sharding = parallel.batch_sharding(mesh, parallel.logical_rules(tiny_config()), ndim=2)
  assert sharding.spec == P(("dcn", "data", "fsdp"), None)
  np.testing.assert_array_equal(parallel.local_rows(sharding, 16), np.arange(16))


@pytest.mark.parametrize("overrides, message", [
    (["mesh.data=3"], r"mesh dcn=1 x data=3 x fsdp=1 x tensor=1 has 3 devices but 8 are available"),
    (["mesh.data=8", "train.batch_size=12"], r"train.batch_size \(12\) is not divisible by the batch mesh axes"),
    (["mesh.data=8", "train.microbatches=4"], r"train.batch_size / train.microbatches \(4\) is not divisible"),
    (["mesh.data=2", "mesh.tensor=4"], r"'heads' dimension \(2\) is not divisible by mesh tensor=4"),
    (["rules=(('batch', ('data',)), ('embed', 'model'))"], r"maps 'embed' to mesh axis 'model'"),
])
def test_bad_inputs_stop_before_compiling(overrides, message):
  config = tiny_config(*overrides)
  compiles = []
  listener = lambda event, *_, **__: compiles.append(event) if "backend_compile" in event else None
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    with pytest.raises(UserError, match=message):
      Trainer(config)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert not compiles


def test_the_cli_prints_one_line_and_exits_2(tmp_path, capsys):
  code = cli.main(["train", "--config", "bert_tiny", "--workdir", str(tmp_path), "--config.mesh.data=3"])
  err = capsys.readouterr().err
  assert code == 2
  assert err.count("\n") == 1 and err.startswith("bert-jax: error: mesh dcn=1 x data=3")
  assert not (tmp_path / "metrics.jsonl").exists()


def test_distributed_start_up(monkeypatch):
  with pytest.raises(UserError, match="give all of --coordinator"):
    parallel.initialize_distributed("127.0.0.1:1234", None, None)
  assert not parallel.cluster_detected()
  parallel.initialize_distributed()  # no launcher: a single process, nothing to join
  assert jax.process_count() == 1
  for name, value in {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node1", "SLURM_NTASKS": "2",
                      "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}.items():
    monkeypatch.setenv(name, value)
  assert parallel.cluster_detected()
