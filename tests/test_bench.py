"""`bert-jax bench` runs end to end on a tiny config, the train step compiles exactly once, and the benchmark
machinery stays out of the library."""

import json

from layering_helpers import import_graph
import numpy as np

from bert_jax import cli, config as config_lib, flops
from bert_jax.bench import torch_encoders, worker
from bert_jax.objectives import get_objective
from bert_jax.train.trainer import Trainer

TINY = ["train.batch_size=8", "data.seq_len=16", "objective.max_predictions=3", "data.source=synthetic"]


def test_train_step_compiles_once():
  trainer = Trainer(config_lib.load_config("bert_tiny", TINY))
  state = trainer.init_state()
  batches = trainer.batches("", 0)
  with worker.compile_events() as first:
    state, _ = trainer.train_step(state, next(batches))
  with worker.compile_events() as later:
    steps = [int(state.step)]
    for _ in range(3):
      state, outputs = trainer.train_step(state, next(batches))
      steps.append(int(state.step))
  assert worker.backend_compiles(first, "train_step") == 1
  assert worker.compile_seconds(first, "train_step") > 0
  assert worker.backend_compiles(later) == 0  # nothing at all compiles once the step runs
  assert steps == [1, 2, 3, 4] and np.isfinite(float(outputs["loss"]))


def test_hf_labels_sit_at_the_masked_positions():
  config = config_lib.load_config("bert_tiny", TINY)
  batch = get_objective(config).synthetic_batch(8, np.random.default_rng(0))
  labels = torch_encoders.mlm_labels(batch)
  for row in range(8):
    real = batch["masked_weights"][row] > 0
    expected = np.full(16, -100)
    expected[batch["masked_positions"][row][real]] = batch["masked_ids"][row][real]
    np.testing.assert_array_equal(labels[row], expected)


def test_bench_command_json(tmp_path, capsys):
  argv = ["bench", "--config", "bert_tiny", "--batch", "8", "--seq", "16", "--steps", "2", "--rounds", "2",
          "--warmup", "1", "--compare-hf", "--pipeline-batches", "1", "--workdir", str(tmp_path), "--json",
          "--config.model.dropout=0", "--config.model.attention_dropout=0"]
  assert cli.main(argv) == 0
  result = json.loads(capsys.readouterr().out)
  config = config_lib.load_config("bert_tiny", ["train.batch_size=8", "data.seq_len=16",
                                                "objective.max_predictions=3"])
  assert result["flops_per_token"] == flops.flops_per_token(config)
  assert (result["batch_size"], result["seq_len"], result["steps"], result["recompilations"]) == (8, 16, 2, 0)
  for run in (result, result["hf"]):
    assert np.isclose(run["tokens_per_second"] * run["step_seconds"], 8 * 16)
    assert run["mfu"] == run["tokens_per_second"] * result["flops_per_token"] / result["matmul_peak_flops"]
    assert run["peak_host_memory_bytes"] > 100 * 2 ** 20
  assert result["compile_seconds"] > 0 and result["hf"]["compile_seconds"] is None
  assert result["matmul_peak_flops"] > 1e9 and result["hf"]["matmul_peak_flops"] > 1e9
  assert np.isclose(result["speedup_vs_hf"], result["tokens_per_second"] / result["hf"]["tokens_per_second"])
  assert result["pipeline_tokens_per_second"] > 0
  # the PyTorch worker starts from our parameters (written by the JAX worker) and trains on the same batch
  assert np.isclose(result["first_loss"], result["hf"]["first_loss"], rtol=1e-4)
  assert result["hf"]["architecture"] == "BertForPreTraining" and result["hf"]["optimizer"] == "AdamW"


def test_bench_rejects_what_it_cannot_compare(capsys):
  assert cli.main(["bench", "--config", "bert_tiny", "--steps", "0"]) == 2
  assert cli.main(["bench", "--config", "bert_tiny", "--compare-hf", "--config.model.dtype=float16"]) == 2
  assert "compares float32 training" in capsys.readouterr().err


def test_only_the_bench_command_imports_the_benchmark_package():
  importers = {source for source, targets in import_graph().items() for target in targets
               if target.startswith("bert_jax.bench") and not source.startswith("bert_jax.bench")}
  assert importers == {"bert_jax.commands.bench"}
