"""Sharded training equals single-device training: the same losses on every mesh, parameters sharded as
the rules say, gradient accumulation equal to one large batch, two processes equal to one."""

import json
import os
from pathlib import Path
import socket
import subprocess
import sys

import jax
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from bert_jax import cli, config as config_lib
from bert_jax.errors import UserError
from bert_jax.train.metrics_writer import MetricsWriter
from bert_jax.train.trainer import Hook, Trainer

REPO = Path(__file__).resolve().parent.parent
STEPS = 20
COMMON = ["data.source=synthetic", "train.batch_size=16", "data.seq_len=32", f"train.steps={STEPS}",
          "train.log_every=1", "optimizer.warmup_steps=5"]
MESHES = {"fsdp": ["mesh.data=2", "mesh.fsdp=4"], "one_device": [],
          "tensor": ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"]}


def tiny_config(*overrides: str):
  return config_lib.load_config("bert_tiny", [f"--config.{o}" for o in (*COMMON, *overrides)])


def losses(records: list[dict]) -> np.ndarray:
  return np.array([r["loss"] for r in records])


def read_jsonl(path: Path) -> list[dict]:
  return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """20 steps of tiny BERT (with dropout) through the CLI on (8 data), then on the other meshes from the
  same initial state; returns losses per mesh and the tensor-parallel trainer with its final state."""
  workdir = tmp_path_factory.mktemp("data8")
  assert cli.main(["train", "--config", "bert_tiny", "--workdir", str(workdir),
                   *[f"--config.{o}" for o in COMMON]]) == 0
  result = {"data8": read_jsonl(workdir / "metrics.jsonl"), "workdir": workdir}
  tensor_trainer = Trainer(tiny_config(*MESHES["tensor"]))
  initial = tensor_trainer.init_state()
  initial_on_host = jax.device_get(initial)
  for name, overrides in MESHES.items():
    devices = jax.devices()[:1] if name == "one_device" else None
    trainer = tensor_trainer if name == "tensor" else Trainer(tiny_config(*overrides), devices)
    state = initial if name == "tensor" else jax.device_put(initial_on_host, trainer.state_shardings)
    writer = MetricsWriter(str(workdir), STEPS, enabled=False)
    state, records = trainer.run(state, trainer.batches(str(workdir)), writer)
    result[name] = records
    if name == "tensor":
      result["tensor_trainer"], result["tensor_state"] = trainer, state
  return result


@pytest.mark.parametrize("mesh", ["tensor", "fsdp", "one_device"])
def test_every_mesh_gives_the_same_losses(runs, mesh):
  reference = losses(runs["data8"])
  assert len(reference) == STEPS and len(runs[mesh]) == STEPS
  assert np.ptp(reference) > 1e-3  # the losses move from step to step: the comparison is not between constants
  np.testing.assert_allclose(losses(runs[mesh]), reference, rtol=1e-5)


def test_cli_writes_config_metrics_and_tensorboard(runs):
  workdir, records = runs["workdir"], runs["data8"]
  assert [r["step"] for r in records] == list(range(1, STEPS + 1))
  for key in ("loss", "learning_rate", "tokens_per_second", "mlm_accuracy", "nsp_accuracy", "flops_per_token"):
    assert key in records[-1]
  assert records[-1]["tokens_per_second"] > 0 and records[0]["tokens_per_second"] is None  # step 1 compiles
  assert records[4]["learning_rate"] == pytest.approx(4 / 5 * 1e-3, rel=1e-6)  # step 5 used warm-up step 4
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["train"]["steps"] == STEPS and saved["data"]["source"] == "synthetic"
  assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))


def test_parameters_and_optimizer_state_are_sharded_as_the_rules_say(runs):
  trainer, state = runs["tensor_trainer"], runs["tensor_state"]
  params = state.params
  expected = {
      ("encoder", "attention_0", "self", "query", "kernel"): (P("fsdp", "tensor", None), (32, 1, 32)),
      ("encoder", "attention_0", "self", "out", "kernel"): (P("tensor", None, "fsdp"), (1, 32, 32)),
      ("encoder", "ffn_1", "intermediate", "kernel"): (P("fsdp", "tensor"), (32, 128)),
      ("encoder", "embeddings", "word_embeddings", "embedding"): (P("tensor", "fsdp"), (2048, 32)),
      ("encoder", "embeddings", "position_embeddings", "embedding"): (P(None, "fsdp"), (128, 32)),
      ("encoder", "ffn_1", "layer_norm", "scale"): (P("fsdp"), (32,)),
      ("mlm_head", "bias"): (P("tensor"), (2048,)),
  }
  adam_mu = state.opt_state[1][0].mu  # chain(clip, adamw): adamw's first moment
  for path, (spec, shard_shape) in expected.items():
    leaf, mu = params, adam_mu
    for key in path:
      leaf, mu = leaf[key], mu[key]
    for array in (leaf, mu):
      assert array.sharding.spec == spec, path
      assert {s.data.shape for s in array.addressable_shards} == {shard_shape}, path
  batch = next(trainer.batches("unused"))
  assert batch["input_ids"].sharding.spec == P(("dcn", "data", "fsdp"), None)
  assert {s.data.shape for s in batch["input_ids"].addressable_shards} == {(4, 32)}


def test_gradient_accumulation_equals_one_large_batch_eval_and_a_bad_loss_stops_the_run(tmp_path):
  deterministic = ["model.dropout=0.0", "model.attention_dropout=0.0", "train.batch_size=32", "train.steps=2"]
  trainers = [Trainer(tiny_config(*deterministic, f"train.microbatches={m}")) for m in (4, 1)]
  initial = jax.device_get(trainers[0].init_state())
  results = []
  for trainer in trainers:
    state, records = trainer.run(jax.device_put(initial, trainer.state_shardings), trainer.batches(str(tmp_path)),
                                 MetricsWriter(str(tmp_path), 2, enabled=False))
    results.append((losses(records), jax.device_get(state.params)))
  (loss_4x8, params_4x8), (loss_1x32, params_1x32) = results
  np.testing.assert_allclose(loss_4x8, loss_1x32, rtol=1e-5)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), params_4x8, params_1x32)
  moved = jax.tree_util.tree_map(lambda a, b: np.abs(a - b).max(), params_1x32, initial.params)
  assert max(jax.tree_util.tree_leaves(moved)) > 1e-4  # two real updates happened

  trainer = trainers[1]
  evaluated, _ = trainer.eval_step(jax.device_put(initial.params, trainer.param_shardings),
                                   next(trainer.batches(str(tmp_path))))
  eval_loss = trainer.objective.summarize(*jax.device_get([evaluated[k] for k in ("sums", "metrics", "counts")]))
  assert eval_loss["loss"] == pytest.approx(loss_1x32[0], rel=1e-5)  # no dropout: eval = the first train loss

  clean = trainer.batches(str(tmp_path))
  def batches():
    yield next(clean)
    poisoned = next(clean)
    yield {**poisoned, "masked_weights": poisoned["masked_weights"] * np.nan}
  seen = []
  with pytest.raises(UserError, match="at step 2"):
    trainer.run(jax.device_put(initial, trainer.state_shardings), batches(),
                MetricsWriter(str(tmp_path), 2, enabled=False), [Hook(1, lambda step, state: seen.append(step))])
  assert seen == [1]  # the hook (a checkpoint, say) never saw the broken step


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_log_the_same_losses_as_one(runs, tmp_path):
  """launch/local.sh: 2 processes x 4 virtual devices, gloo, the dcn mesh axis across the processes."""
  env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()), DEVICES_PER_PROCESS="4")
  env["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=8", "")
  command = ["bash", str(REPO / "launch" / "local.sh"), "2", "bert_tiny", str(tmp_path), "--config.mesh.dcn=2",
             *[f"--config.{o}" for o in COMMON]]
  done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "dcn=2 x data=4" in done.stdout and "2 process(es)" in done.stdout
  assert not (tmp_path / "process_1.log").read_text().count("step 1/")  # only process 0 logs
  np.testing.assert_allclose(losses(read_jsonl(tmp_path / "metrics.jsonl")), losses(runs["data8"]), rtol=1e-5)
