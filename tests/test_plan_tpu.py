"""`bert-jax plan --topology`: the train step compiled by the TPU's own compiler (libtpu, no TPU), its memory and the
collectives it emits against the plan's model; TPU slice names; the reader of optimized HLO."""

import contextlib
import io
import json
from pathlib import Path
import re
import shlex

import jax
import numpy as np
import pytest

from bert_jax import cli, collectives, parallel, topology
from bert_jax.commands import plan as plan_command

GiB = 2 ** 30


def test_libtpu_is_installed_and_the_tests_stay_on_cpu():
  assert topology.libtpu_installed(), "the test extra installs jax[tpu]: pip install -e '.[test]'"
  devices = topology.devices(topology.parse("v5e:2x2"))
  assert [d.device_kind for d in devices] == ["TPU v5 lite"] * 4
  assert [d.platform for d in jax.devices()] == ["cpu"] * 8  # conftest's JAX_PLATFORMS=cpu holds with libtpu


@pytest.mark.parametrize("name, topology_name, chips, accelerator_type", [
    ("v4-8", "v4:2x2x1", 4, "v4-8"), ("v4-32", "v4:2x2x4", 16, "v4-32"), ("v4-64", "v4:2x4x4", 32, "v4-64"),
    ("v5p-128", "v5p:4x4x4", 64, "v5p-128"), ("v5e-64", "v5e:8x8", 64, "v5e-64"),
    ("v5litepod-16", "v5e:4x4", 16, "v5e-16"), ("v6e-8", "v6e:2x4", 8, "v6e-8"),
    ("v5e-256", "v5e:16x16", 256, "v5e-256"),
    ("v4:2x4x4", "v4:2x4x4", 32, "v4-64"), ("v5e:8x8", "v5e:8x8", 64, "v5e-64"),
])
def test_cloud_tpu_names(name, topology_name, chips, accelerator_type):
  parsed = topology.parse(name)
  assert (parsed.name, parsed.chips, parsed.accelerator_type) == (topology_name, chips, accelerator_type)
  assert topology.parse(name, slices=2).chips == 2 * chips


def test_slices_lay_the_dcn_axis_across_them():
  devices = topology.devices(topology.parse("v5e:2x2", slices=2))
  mesh = parallel.make_mesh({"dcn": 2, "data": 1, "fsdp": -1, "tensor": 1}, devices)
  assert dict(mesh.shape) == {"dcn": 2, "data": 1, "fsdp": 4, "tensor": 1}
  assert [{d.slice_index for d in row.flat} for row in mesh.devices] == [{0}, {1}]


@pytest.mark.parametrize("argv, message", [
    (["--topology", "v3-8"], "give a Cloud TPU type such as v4-32"),
    (["--topology", "v4-12"], "not 6 chips"),
    (["--topology", "v4:2x2"], "a v4 topology has 3 axes"),
    (["--topology", "v5e-4", "--chip", "v4"], "leave --chip out"),
    (["--topology", "v5e-4", "--devices", "8"], "leave --devices out"),
    (["--mesh", "fsdp=4", "--slices", "2"], "--slices needs --topology"),
    (["--topology", "v5e-4", "--slices", "2", "--mesh", "dcn=4,fsdp=-1"], "differs from --slices 2"),
    ([], "give --mesh"),
])
def test_bad_topology_stops_with_one_line(argv, message, capsys):
  assert cli.main(["plan", "--config", "bert_tiny", *argv]) == 2
  err = capsys.readouterr().err
  assert message in err and len(err.strip().splitlines()) == 1, err


def test_without_libtpu_it_says_so_and_estimates_on_cpu(monkeypatch, capsys):
  monkeypatch.setattr(topology, "libtpu_installed", lambda: False)
  assert cli.main(["plan", "--config", "bert_tiny", "--topology", "v5e:2x2", "--mesh", "fsdp=4"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[0].startswith("libtpu is not installed") and "pip install -e '.[tpu]'" in out[0]
  assert "4 virtual CPU devices" in out[1] and "compiled by XLA:CPU" in out[2]


def test_a_step_beyond_the_chips_memory_is_reported_and_the_next_mesh_planned(capsys):
  """The TPU compiler refuses a step whose temporaries exceed the chip's HBM: plan says so for that mesh, in one
  line with the compiler's figures, and goes on to the next."""
  argv = ["plan", "--config", "bert_tiny", "--topology", "v5e:2x2", "--batch", "4", "--config.data.seq_len=32768",
          "--config.model.max_position=32768", "--mesh", "data=4", "--mesh", "fsdp=4"]
  assert cli.main(argv) == 0
  refused = [line for line in capsys.readouterr().out.splitlines() if line]
  assert [line.split(":")[0] for line in refused] == ["bert_tiny on mesh dcn=1 x data=4 x fsdp=1 x tensor=1",
                                                      "bert_tiny on mesh dcn=1 x data=1 x fsdp=4 x tensor=1"]
  assert all("does not fit; the compiler says: Ran out of memory" in line and "exceeds available HBM (15.75G). Shard"
             in line for line in refused), refused


@pytest.fixture(scope="module")
def tiny_fsdp():
  """bert_tiny with 4 scanned layers and a vocabulary of 512 (the layers' parameters outweigh the embeddings', whose
  gradients the compiler reduces its own way at this size), bfloat16, on v5e:2x2 with fsdp=4, planned through the
  command line."""
  argv = ["plan", "--config", "bert_tiny", "--topology", "v5e:2x2", "--mesh", "fsdp=-1", "--dtype", "bfloat16",
          "--config.model.scan_layers=True", "--config.model.num_layers=4", "--config.model.vocab_size=512", "--json"]
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert cli.main(argv) == 0
  return json.loads(out.getvalue())


def test_tpu_compiler_memory_per_chip(tiny_fsdp):
  p, memory = tiny_fsdp, tiny_fsdp["memory"]
  assert (p["compiler"], p["chip"], p["topology"], p["devices"]) == ("tpu", "v5e", "v5e:2x2", 4)
  assert p["mesh"] == {"dcn": 1, "data": 1, "fsdp": 4, "tensor": 1}
  state = memory["parameters"] + memory["optimizer_state"] + memory["batch"]
  # float32 parameters, a quarter of each matrix on each chip (vectors sharded on heads stay whole)
  assert p["parameters"] < memory["parameters"] < 1.1 * p["parameters"]
  # the TPU pads arrays to its (8, 128) tiles: a chip's [4, 16, 2, 32] slice of the layers' query kernels takes 4x
  assert state <= memory["arguments"] <= 2.5 * state
  assert p["bytes_per_device"] == memory["arguments"] + memory["outputs_not_aliased"] + memory["temporaries"]
  assert memory["temporaries"] > 0 and p["fits"] is True
  assert p["hbm_left_bytes"] == 16 * GiB - p["bytes_per_device"]
  assert p["flops_per_step"] is None  # the TPU's cost analysis counts a scanned body once: the model FLOPs time it
  assert p["step_seconds"] == pytest.approx(p["model_flops_per_step"] / (4 * 197e12 * 0.4))


def test_tpu_collectives_match_the_plans_model(tiny_fsdp):
  compiled, model = tiny_fsdp["collectives"], tiny_fsdp["communication_bytes_per_device"]
  kinds = compiled["by_kind"]
  assert compiled["trip_counts_known"]
  assert kinds["all-gather"]["count"] > 0 and kinds["reduce-scatter"]["count"] > 0
  # a gather in the scanned layers' body runs once per layer: its count is the loop's 4 trips
  layer_gathers = [c for c in compiled["largest"] if "/while/body/" in c["op"] and c["kind"] == "all-gather"]
  assert layer_gathers and all(c["count"] == 4 for c in layer_gathers)
  assert all(shape.startswith("bf16[") for c in layer_gathers for shape in c["shapes"])  # gathered as computed with
  # the modelled bytes against those of the emitted collectives: parameters gathered in bfloat16 for the forward and
  # again for the backward, gradients reduce-scattered in float32 (the embeddings' a little less: the compiler finds
  # cheaper ways for tables this small)
  roles = compiled["by_role"]
  reductions = model["gradient_reduce_scatter"] + model["gradient_all_reduce"]
  assert roles["gather"] == pytest.approx(model["fsdp_all_gather"], rel=0.15)
  assert roles["reduce"] == pytest.approx(reductions, rel=0.25)
  text = plan_command.describe("bert_tiny", tiny_fsdp)
  assert "compiled by the TPU compiler" in text and "reduce-scatter" in text and "HBM" in text


HLO = """HloModule m

%body (p: (s32[], f32[8,16])) -> (s32[], f32[8,16]) {
  %p = (s32[], f32[8,16]) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %one = s32[] constant(1)
  %next = s32[] add(%i, %one)
  %x = f32[8,16] get-tuple-element(%p), index=1
  %ag = f32[32,16] all-gather(%x), channel_id=3, replica_groups=[2,4]<=[8], dimensions={0}, metadata={op_name="layer"}
  %y = f32[8,16] slice(%ag), slice={[0:8], [0:16]}
  ROOT %t = (s32[], f32[8,16]) tuple(%next, %y)
}

%cond (p: (s32[], f32[8,16])) -> pred[] {
  %p = (s32[], f32[8,16]) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %n = s32[] constant(12)
  ROOT %lt = pred[] compare(%i, %n), direction=LT
}

%all-reduce-scatter.1 (input: f32[64,16]) -> f32[8,16] {
  %input = f32[64,16] parameter(0)
  %ar = f32[64,16] all-reduce(%input), channel_id=5, replica_groups=mesh['a'=8] {'a'}, to_apply=%add
  ROOT %ds = f32[8,16] slice(%ar), slice={[0:8], [0:16]}
}

ENTRY %main (a: f32[8,16], b: f32[64,16]) -> f32[8,16] {
  %a = f32[8,16] parameter(0)
  %b = f32[64,16] parameter(1)
  %zero = s32[] constant(2)
  %init = (s32[], f32[8,16]) tuple(%zero, %a)
  %w = (s32[], f32[8,16]) while(%init), condition=%cond, body=%body
  %rs = f32[8,16] fusion(%b), kind=kCustom, calls=%all-reduce-scatter.1
  %cp = (bf16[4,16], bf16[4,16], u32[], u32[]) collective-permute-start(%a), channel_id=7, source_target_pairs={{0,1}}
  %fzero = f32[] constant(0)
  %zeros = f32[32,16] broadcast(%fzero), dimensions={}
  %dus = f32[32,16] dynamic-update-slice(%zeros, %a, %zero, %zero)
  %gather = f32[32,16] all-reduce(%dus), channel_id=9, replica_groups=mesh['a'=4,'b'=2], device_ids=([2,4]T(1,0)) {'a'}
  ROOT %out = f32[8,16] get-tuple-element(%w), index=1
}
"""


def test_hlo_reader_counts_loop_trips_and_names_what_the_tpu_rewrote():
  found = {c.kind: c for c in collectives.collectives(HLO)}
  gather = found["all-gather"]
  assert (gather.count, gather.group, gather.data_bytes, gather.op_name) == (10, 4, 32 * 16 * 4, "layer")
  assert gather.sent_bytes == pytest.approx(10 * 0.75 * 32 * 16 * 4)  # trips: from 2 up to 12
  scatter = found["reduce-scatter"]
  assert (scatter.count, scatter.group, scatter.data_bytes) == (1, 8, 64 * 16 * 4)
  assert scatter.sent_bytes == pytest.approx(7 / 8 * 64 * 16 * 4)
  assert found["collective-permute"].sent_bytes == 4 * 16 * 2
  assert found["all-reduce"].replaces == "all-gather"  # shards written into zeros, summed: a gather
  assert found["all-reduce"].group == 4
  summary = collectives.summary(found.values())
  assert summary["all-reduce"]["count"] == 1 and summary["all-gather"]["count"] == 10
  roles = collectives.roles(found.values())
  assert roles["gather"] == gather.sent_bytes + found["all-reduce"].sent_bytes
  assert np.isclose(sum(collectives.roles(found.values()).values()),
                    sum(c.sent_bytes for c in found.values()))


def test_the_readmes_topology_lines_at_tiny_size(capsys):
  """Each `bert-jax plan --topology` line of the README, as written but for the tiny config of its family and a
  recipe batch cut to 128 sequences (one a chip on the largest) of 32 tokens: compiled by the TPU compiler for the
  README's slices."""
  readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
  lines = [line for block in re.findall(r"```bash\n(.*?)```", readme, re.S) for line in block.splitlines()
           if line.startswith("bert-jax plan") and "--topology" in line]
  assert len(lines) >= 3
  for line in lines:
    argv = shlex.split(line)[1:]
    argv[argv.index("--config") + 1] = argv[argv.index("--config") + 1].replace("_large", "_tiny")
    argv = [a for a in argv if not a.startswith("--config.data.seq_len")]
    assert cli.main([*argv, "--batch", "128", "--config.data.seq_len=32"]) == 0, line
    out = capsys.readouterr().out
    plans = [json.loads(row) for row in out.splitlines() if row.startswith("{")] if "--json" in argv else []
    assert "compiled by XLA:CPU" not in out, line
    for plan in plans:
      assert plan["compiler"] == "tpu" and plan["fits"] is True, line
