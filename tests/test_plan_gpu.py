"""`bert-jax plan --gpu`: the train step compiled by XLA's CUDA compiler for a node of NVIDIA GPUs (jax's CUDA plugin,
no GPU), its memory and the collectives it emits against the plan's model; without the plugin, XLA:CPU's estimate
under a one-line label. The compile tests need the plugin (`pip install -e '.[cuda]'`), which the test extra does not
install: they are skipped where it is absent, except where BERT_JAX_CUDA_PLUGIN=required (.ci/run runs this file so
in a second environment with the cuda extra)."""

import contextlib
import io
import json
import os
from pathlib import Path
import re
import shlex

import pytest

from bert_jax import chips, cli, gpu_targets
from bert_jax.commands import plan as plan_command

GiB = 2 ** 30


def require_cuda_plugin() -> None:
  if os.environ.get("BERT_JAX_CUDA_PLUGIN") == "required":
    import jax_plugins.xla_cuda12  # noqa: F401  (an ImportError fails the test)
  else:
    pytest.importorskip("jax_plugins.xla_cuda12", reason="jax's CUDA plugin: pip install -e '.[cuda]'")


def cuda_plugin_installed() -> bool:
  import importlib.util

  try:
    return importlib.util.find_spec("jax_plugins.xla_cuda12") is not None
  except ModuleNotFoundError:  # no jax_plugins package at all
    return False


def test_every_gpu_chip_has_a_target_that_names_its_device_kind():
  gpus = {name for name, chip in chips.CHIPS.items() if not chip.torus_dims}
  assert set(gpu_targets.TARGETS) == gpus
  for name, target in gpu_targets.TARGETS.items():
    chip = chips.get_chip(name)
    assert chips.peak_flops(target.description) == chip.peak_flops  # the compiled devices' kind finds the chip
    text = target.text(chip)
    assert f"device_memory_size: {chip.hbm_bytes}\n" in text  # memory from the chip table, the one source
    assert f"core_count: {target.sms}\n" in text and 'platform_name: "CUDA"' in text
    assert "runtime_version { major: 12 minor: 8 patch: 0 }" in text
    assert "dnn_version_info { major: 9 minor: 8 patch: 0 }" in text
  assert "cuda_compute_capability { major: 9 minor: 0 }" in gpu_targets.TARGETS["h100"].text(chips.get_chip("h100"))


@pytest.mark.parametrize("gpus, name, nodes", [(1, "1x1x1", 1), (4, "1x1x4", 1), (8, "1x1x8", 1), (16, "1x2x8", 2),
                                               (32, "1x4x8", 4)])
def test_gpus_fill_nodes_of_eight(gpus, name, nodes):
  parsed = gpu_targets.parse("h100", gpus)
  assert (parsed.name, parsed.nodes, parsed.gpus, parsed.chip.name) == (name, nodes, gpus, "h100")


@pytest.mark.parametrize("argv, message", [
    (["--gpus", "8", "--mesh", "fsdp=8"], "--gpus needs --gpu"),
    (["--gpu", "h100", "--topology", "v4-32"], "give one of them"),
    (["--gpu", "h100", "--gpus", "12"], "whole nodes of 8"),
    (["--gpu", "h100", "--gpus", "0"], "whole nodes of 8"),
    (["--gpu", "h100", "--chip", "a100"], "leave --chip out"),
    (["--gpu", "h100", "--devices", "4"], "leave --devices out"),
    (["--gpu", "h100", "--slices", "2"], "--slices joins TPU slices"),
    (["--gpu", "h100", "--mesh", "fsdp=16"], "has 16 devices but 8 are available"),
])
def test_bad_gpu_arguments_stop_with_one_line(argv, message, capsys):
  assert cli.main(["plan", "--config", "bert_tiny", *argv]) == 2
  err = capsys.readouterr().err
  assert message in err and len(err.strip().splitlines()) == 1, err


def test_without_the_cuda_plugin_it_says_so_and_estimates_on_cpu(monkeypatch, capsys):
  monkeypatch.setattr(gpu_targets, "cuda_plugin_installed", lambda: False)  # absent here, or made so
  assert cli.main(["plan", "--config", "bert_tiny", "--gpu", "h100", "--gpus", "8", "--mesh", "fsdp=8"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[0].startswith("jax's CUDA plugin is not installed") and "pip install -e '.[cuda]'" in out[0]
  assert "8 virtual CPU devices" in out[1] and "compiled by XLA:CPU" in out[2]
  assert any(line.strip().startswith("h100 HBM 80.00 GiB: fits") for line in out)


def test_the_gpu_count_is_the_default_mesh(monkeypatch, capsys):
  """No --mesh: the config's (data=-1) over --gpus."""
  monkeypatch.setattr(gpu_targets, "cuda_plugin_installed", lambda: False)
  assert cli.main(["plan", "--config", "bert_tiny", "--gpu", "a100", "--gpus", "4", "--json"]) == 0
  plan = json.loads(capsys.readouterr().out)
  assert (plan["compiler"], plan["chip"], plan["devices"], plan["mesh"]["data"]) == ("cpu", "a100", 4, 4)
  assert (plan["topology"], plan["nodes"], plan["gpus_per_node"]) == ("1x1x4", 1, 4)


def _plan(argv: list[str]) -> list[dict]:
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert cli.main(["plan", *argv, "--json"]) == 0
  return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture(scope="module")
def tiny_fsdp():
  """bert_tiny with 4 scanned layers and a vocabulary of 512, bfloat16, on one node of 8 H100s with fsdp=8, compiled
  by the CUDA compiler (the plugin, no GPU) through the command line."""
  require_cuda_plugin()
  [plan] = _plan(["--config", "bert_tiny", "--gpu", "h100", "--gpus", "8", "--mesh", "fsdp=-1", "--dtype",
                  "bfloat16", "--config.model.scan_layers=True", "--config.model.num_layers=4",
                  "--config.model.vocab_size=512"])
  return plan


def test_cuda_compiler_memory_per_gpu(tiny_fsdp):
  p, memory = tiny_fsdp, tiny_fsdp["memory"]
  assert (p["compiler"], p["chip"], p["topology"], p["devices"]) == ("gpu", "h100", "1x1x8", 8)
  assert p["device_kind"] == "NVIDIA H100 80GB HBM3"
  assert p["mesh"] == {"dcn": 1, "data": 1, "fsdp": 8, "tensor": 1}
  state = memory["parameters"] + memory["optimizer_state"] + memory["batch"]
  assert state <= memory["arguments"] <= 1.1 * state + 64  # no tiles to pad to on a GPU; step and rng
  assert p["bytes_per_device"] == memory["arguments"] + memory["outputs_not_aliased"] + memory["temporaries"]
  assert memory["temporaries"] > 0 and p["fits"] is True
  assert p["hbm_left_bytes"] == 80 * GiB - p["bytes_per_device"]
  assert p["flops_per_step"] is None  # as on a TPU, the model FLOPs time the step
  assert p["step_seconds"] == pytest.approx(p["model_flops_per_step"] / (8 * 989e12 * 0.4))


def test_cuda_collectives_match_the_plans_model(tiny_fsdp):
  compiled, model = tiny_fsdp["collectives"], tiny_fsdp["communication_bytes_per_device"]
  kinds = compiled["by_kind"]
  assert compiled["trip_counts_known"]  # XLA:GPU writes each loop's trip count
  assert kinds["all-gather"]["count"] > 0 and kinds["reduce-scatter"]["count"] > 0
  # async starts typed (operands, results): a gather's data is its result, a scatter's its input
  roles = compiled["by_role"]
  reductions = model["gradient_reduce_scatter"] + model["gradient_all_reduce"]
  assert roles["gather"] == pytest.approx(model["fsdp_all_gather"], rel=0.15)
  assert roles["reduce"] == pytest.approx(reductions, rel=0.15)
  layer_gathers = [c for c in compiled["largest"] if "/while/body/" in c["op"] and c["kind"] == "all-gather"]
  assert layer_gathers and all(c["count"] == 4 for c in layer_gathers)  # once per trip of the 4 layers' loop
  text = plan_command.describe("bert_tiny", tiny_fsdp)
  assert "compiled by the CUDA compiler" in text and "memory per GPU" in text and "reduce-scatter" in text
  assert "8 NVIDIA H100 80GB HBM3 GPUs (1 node of 8, topology 1x1x8)" in text


def test_two_nodes_put_the_dcn_axis_across_them():
  require_cuda_plugin()
  [plan] = _plan(["--config", "bert_tiny", "--gpu", "h200", "--gpus", "16", "--mesh", "dcn=2,fsdp=-1"])
  assert (plan["compiler"], plan["topology"], plan["nodes"], plan["devices"]) == ("gpu", "1x2x8", 2, 16)
  assert plan["mesh"] == {"dcn": 2, "data": 1, "fsdp": 8, "tensor": 1} and plan["hbm_bytes"] == 140 * GiB


def test_the_readmes_gpu_lines_at_tiny_size(capsys):
  """Each `bert-jax plan --gpu` line of the README, as written but for the tiny config of its family and a batch of
  64 sequences of 32 tokens: compiled by the CUDA compiler where the plugin is installed, else XLA:CPU's estimate
  under its label."""
  readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
  lines = [line for block in re.findall(r"```bash\n(.*?)```", readme, re.S) for line in block.splitlines()
           if line.startswith("bert-jax plan") and "--gpu " in line]
  assert lines
  for line in lines:
    argv = shlex.split(line)[1:]
    argv[argv.index("--config") + 1] = argv[argv.index("--config") + 1].replace("_large", "_tiny")
    argv = [a for a in argv if not a.startswith("--config.data.seq_len")]
    assert cli.main([*argv, "--batch", "64", "--config.data.seq_len=32"]) == 0, line
    captured = capsys.readouterr()
    plans = [json.loads(row) for row in captured.out.splitlines() if row.startswith("{")]
    assert plans, line
    compiler = "gpu" if cuda_plugin_installed() else "cpu"
    assert all(plan["compiler"] == compiler and plan["fits"] for plan in plans), line


@pytest.mark.parametrize("attention_dropout, fused", [(0.0, True), (0.1, False)])
def test_auto_attention_on_a_gpu_is_cudnns_fused_attention_where_the_call_allows_it(attention_dropout, fused):
  """model.attention=auto on a GPU mesh: bfloat16 self-attention without attention dropout lowers to cuDNN's fused
  attention (jax.nn.dot_product_attention), forward and backward, which XLA's CUDA compiler accepts; with attention
  dropout it stays the XLA core. (cuDNN itself does not run here: no GPU.)"""
  require_cuda_plugin()
  import re

  from bert_jax import config as config_lib, plan
  from bert_jax.train.trainer import Trainer

  devices = gpu_targets.devices(gpu_targets.parse("h100", 1))
  config = config_lib.load_config("bert_tiny", ["model.dtype=bfloat16", f"model.attention_dropout={attention_dropout}",
                                                "model.hidden_size=256", "model.num_heads=4", "train.batch_size=8",
                                                "data.seq_len=128"])
  hlo = plan.lower_train_step(Trainer(config, devices)).compile().as_text()
  calls = set(re.findall(r'custom_call_target="([^"]+)"', hlo))
  assert ({"__cudnn$fmhaScaleBiasSoftmax", "__cudnn$fmhaScaleBiasSoftmaxBackward"} <= calls) == fused
  assert not fused or "__cudnn$fmhaScaleBiasSoftmaxDropout" not in calls
