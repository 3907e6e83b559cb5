"""Model FLOPs per token, device peaks for MFU, and the log writer's files and console line."""

import json

from bert_jax import config as config_lib, flops, params
from bert_jax.train.metrics_writer import MetricsWriter, console_line


def test_flops_per_token_of_tiny_bert_match_the_hand_count():
  config = config_lib.load_config("bert_tiny")  # L=64 tokens, P=10 predictions, H=64, F=256, V=4096, 2 layers
  L, P, H, F, V, layers = 64, 10, 64, 256, 4096, 2
  per_layer = 8 * L * H * H + 4 * L * H * F + 4 * L * L * H  # q, k, v, out; ffn up and down; scores and mix
  heads = 2 * H * H + 2 * H * 2 + 2 * P * H * H + 2 * P * H * V  # pooler, NSP, MLM transform and decoder
  assert flops.flops_per_token(config) == 3 * (layers * per_layer + heads) / L


def test_shared_layers_cost_their_applications_not_their_storage():
  shared = config_lib.load_config("albert_tiny", ["model.share=all"])
  unshared = config_lib.load_config("albert_tiny", ["model.share=none"])
  scanned = config_lib.load_config("albert_tiny", ["model.share=none", "model.scan_layers=True"])
  assert params.count_model(shared.model)["total"] < params.count_model(unshared.model)["total"]
  assert flops.flops_per_token(shared) == flops.flops_per_token(unshared) == flops.flops_per_token(scanned)


RECORD = {"step": 3, "loss": 2.5, "mlm_accuracy": 0.25, "learning_rate": 1e-4, "grad_norm": 0.5,
          "flops_per_token": 1e6, "tokens_per_second": 12345.0, "mfu": 0.125, "eta_seconds": 75.0}


def test_console_line():
  line = console_line(RECORD, total_steps=10)
  assert line == "step 3/10 | loss 2.5 | mlm_accuracy 0.25 | lr 0.0001 | 12,345 tok/s | MFU 12.5% | ETA 0:01:15"


def test_writer_files(tmp_path, capsys):
  writer = MetricsWriter(str(tmp_path), total_steps=10)
  writer.write(RECORD)
  writer.write({**RECORD, "step": 6, "tokens_per_second": None, "mfu": None, "eta_seconds": None})
  writer.close()
  lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert lines[0] == RECORD and lines[1]["step"] == 6 and lines[1]["tokens_per_second"] is None
  assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  assert "step 6/10 | loss 2.5" in capsys.readouterr().out


def test_only_the_writing_process_writes(tmp_path):
  writer = MetricsWriter(str(tmp_path / "w"), total_steps=10, enabled=False)
  writer.write(RECORD)
  writer.close()
  assert not (tmp_path / "w").exists()
