"""`bert-jax plan`: the compiled train step's memory, FLOPs and traffic against the model count and the shardings;
the chip table."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from bert_jax import chips, cli, config as config_lib, plan
from bert_jax.train.trainer import Trainer

TINY = ("bert_tiny", "albert_tiny", "xlnet_tiny", "t5_tiny")
# Dropout's random bits are integer hashing that the cost analysis counts as FLOPs: about 5% at H=64, where
# elementwise work weighs most (it grows with H per token, matrix products with H^2). So does the backward pass's
# recomputation of GELU and the norms (layers.recomputed): bert_tiny 1.08 -> 1.12, BERT-base 1.011 -> 1.016.
NO_DROPOUT = {"bert_tiny": ["model.dropout=0.0", "model.attention_dropout=0.0"], "albert_tiny": [],
              "xlnet_tiny": ["model.dropout=0.0"], "t5_tiny": []}


@pytest.mark.parametrize("name", TINY)
def test_xla_flops_and_compiled_memory_agree_with_the_model_count(name):
  config = config_lib.load_config(name, NO_DROPOUT[name] + ["mesh.data=1", "train.batch_size=8"])
  result = plan.make_plan(config, jax.devices()[:1], chips.get_chip("v5e"))
  assert abs(result["xla_over_model"] - 1) < 0.15, result["xla_over_model"]
  memory = result["memory"]
  state_and_batch = (memory["parameters"] + memory["optimizer_state"] + memory["carried_memory"] + memory["batch"]
                     + 4 + 8)  # step, rng
  assert memory["arguments"] == pytest.approx(state_and_batch, rel=1e-3)  # jit drops unused leaves
  assert memory["parameters"] == 4 * result["parameters"]
  assert result["bytes_per_device"] == (memory["arguments"] + memory["outputs_not_aliased"]
                                        + memory["temporaries"])
  assert result["fits"] is True
  assert result["step_seconds"] == pytest.approx(result["flops_per_step"] / (0.4 * 197e12))
  assert result["mfu"] == pytest.approx(0.4 / result["xla_over_model"])


def _mesh_axes(sharding) -> set[str]:
  return {axis for entry in sharding.spec if entry for axis in ((entry,) if isinstance(entry, str) else entry)}


def test_communication_follows_the_shardings():
  config = config_lib.load_config("bert_tiny", ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"])
  trainer = Trainer(config, jax.devices()[:8])
  traffic = plan.communication(trainer, config)
  gathered = reduced = 0.0
  for leaf, sharding in zip(jax.tree_util.tree_leaves(trainer.abstract_params),
                            jax.tree_util.tree_leaves(trainer.param_shardings)):
    axes = _mesh_axes(sharding)
    local = 4 * np.prod(leaf.shape) / (2 if "tensor" in axes else 1)
    if "fsdp" in axes:  # gathered over fsdp=2; its gradient scattered over fsdp, then all-reduced over data=2
      gathered += local
      reduced += 2 * (1 - 1 / 2) * local / 2
    else:  # its gradient all-reduced over data x fsdp = 4
      reduced += 2 * (1 - 1 / 4) * local
  assert gathered > 0
  assert traffic["fsdp_all_gather"] == pytest.approx(2 * 0.5 * gathered)
  assert traffic["gradient_reduce_scatter"] == pytest.approx(0.5 * gathered)
  assert traffic["gradient_all_reduce"] == pytest.approx(reduced)
  # 2 layers x 2 sublayers x (forward + backward) x 64 tokens, 32 / 4 sequences per device, H=64, float32
  assert traffic["tensor_all_reduce"] == pytest.approx(2 * 0.5 * (4 * 2 * 64) * 8 * 64 * 4)


def test_fsdp_over_32_devices_holds_a_32nd_of_the_state():
  """BERT-large (2 of its 24 layers to stay fast) planned on 32 virtual devices in a fresh process."""
  command = [sys.executable, "-m", "bert_jax.cli", "plan", "--config", "bert_large", "--config.model.num_layers=2",
             "--mesh", "data=32", "--mesh", "fsdp=32", "--chip", "v4", "--dtype", "bfloat16", "--json"]
  done = subprocess.run(command, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  data, fsdp = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
  assert data["devices"] == fsdp["devices"] == 32 and fsdp["mesh"]["fsdp"] == 32
  state = lambda p: p["memory"]["parameters"] + p["memory"]["optimizer_state"]
  assert state(fsdp) / state(data) == pytest.approx(1 / 32, rel=0.2)
  compiled_state = lambda p: p["memory"]["arguments"] - p["memory"]["batch"]
  assert compiled_state(fsdp) / compiled_state(data) == pytest.approx(1 / 32, rel=0.2)
  assert data["communication_bytes_per_device"]["gradient_all_reduce"] == pytest.approx(
      2 * 31 / 32 * 4 * data["parameters"])
  assert data["communication_bytes_per_device"]["fsdp_all_gather"] == 0
  # gathered in the bfloat16 they are computed in (the vectors, a sliver, in their float32)
  assert fsdp["communication_bytes_per_device"]["fsdp_all_gather"] == pytest.approx(
      2 * 31 / 32 * 2 * fsdp["parameters"], rel=0.01)
  for p in (data, fsdp):
    assert set(p) >= {"bytes_per_device", "flops_per_step", "fits"} and p["fits"] is True
    assert p["flops_per_step"] == pytest.approx(p["model_flops_per_step"], rel=0.15)


@pytest.mark.parametrize("argv, message", [
    (["--mesh", "data=64", "--devices", "32"], "64 devices but 32 are available"),
    (["--mesh", "data=3,fsdp=-1", "--devices", "32"], "not divisible by 3"),
    (["--mesh", "data=2,fsdp=-1"], "give --devices N"),
    (["--mesh", "data=2,pipeline=2"], "names axis 'pipeline'"),
    (["--mesh", "data=two"], "must be an integer"),
    (["--mesh", "data=2", "--chip", "v3"], "unknown chip 'v3'; use one of v4, v5e, v5p, a100, h100"),
    (["--mesh", "data=16"], "run `bert-jax plan` in a fresh process"),
])
def test_bad_input_stops_with_one_line(argv, message, capsys):
  jax.devices()  # JAX runs with conftest's 8 devices, so a 16-device mesh cannot be had in this process
  assert cli.main(["plan", "--config", "bert_tiny", *argv]) == 2
  err = capsys.readouterr().err
  assert message in err and len(err.strip().splitlines()) == 1, err


def test_chip_table():
  assert chips.peak_flops("NVIDIA H100 80GB HBM3") == 989e12 == chips.get_chip("h100").peak_flops
  assert chips.peak_flops("TPU v5 lite") == 197e12 == chips.get_chip("v5e").peak_flops
  assert chips.peak_flops("TPU v5") == 459e12 and chips.peak_flops("TPU v4") == 275e12
  assert chips.peak_flops("cpu") is None
