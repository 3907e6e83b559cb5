"""Config loading, overrides and the one-line errors for bad input."""

import dataclasses
import subprocess
import sys

from cli_helpers import error_line
import pytest

from bert_jax import cli, config as config_lib, models
from bert_jax.errors import UserError


def test_overrides_are_typed():
  c = config_lib.load_config("bert_tiny", ["--config.train.steps=7", "optimizer.learning_rate=3e-4",
                                           "model.scan_layers=true", "data.source=/tmp/x.txt",
                                           "mesh.fsdp=2"])
  assert (c.train.steps, c.optimizer.learning_rate, c.model.scan_layers, c.data.source, c.mesh.fsdp) == (
      7, 3e-4, True, "/tmp/x.txt", 2)
  assert isinstance(c.optimizer.learning_rate, float)


def test_config_by_path_and_by_name_agree():
  assert config_lib.load_config("configs/bert_base.py").to_dict() == config_lib.load_config("bert_base").to_dict()


@pytest.mark.parametrize("overrides,message", [
    (["train.stpes=3"], "unknown config key 'train.stpes'; did you mean 'train.steps'?"),
    (["train.steps=many"], "config key 'train.steps' expects int"),
    (["train.steps"], "has no '='"),
    (["model.num_heads=5"], "model.hidden_size=64 is not divisible by model.num_heads=5"),
    (["model.hidden_size=0"], "model.hidden_size must be a positive integer"),
    (["model.num_layers=-2"], "model.num_layers must be a positive integer"),
    (["model.embedding_size=-1"], "model.embedding_size must be positive"),
    (["model.num_hidden_groups=3"], "model.num_hidden_groups=3 does not divide model.num_layers=4"),
    (["model.share=half"], "model.share must be one of"),
    (["model.share=attention", "model.scan_layers=True"], "model.scan_layers works with share=none"),
    (["model.attention_dropout=1.5"], "model.attention_dropout must be in [0, 1), got 1.5"),
    (["model.remat=all"], "model.remat must be none or one of full, dots, dots_no_batch, got 'all'"),
    (["model.dtype=float33"], "model.dtype must name a dtype"),
    (["train.batch_size=30", "train.microbatches=4"], "not divisible by train.microbatches=4"),
    (["model.attention=splash", "data.seq_len=200"], "data.seq_len is 200: set data.seq_len to one (e.g. 256)"),
])
def test_bad_input_is_one_clear_error(overrides, message):
  with pytest.raises(UserError, match=None) as error:
    config_lib.load_config("albert_tiny", overrides)
  assert message in str(error.value)


def test_unknown_config_file_names_the_choices():
  with pytest.raises(UserError) as error:
    config_lib.load_config("bert_huge")
  assert "config file 'bert_huge' not found" in str(error.value) and "bert_base" in str(error.value)


def test_a_config_path_that_is_a_directory_says_what_to_give(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(config_lib.CONFIG_DIR.parent)
  assert error_line(capsys, ["train", "--config", "configs", "--workdir", str(tmp_path / "w")]) == (
      "bert-jax: error: --config configs is a directory; give a config file in it (e.g. configs/bert_base.py) or a "
      "config name such as bert_base")
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "config.json").write_text("{}")
  assert error_line(capsys, ["params", "--config", str(tmp_path / "run")]) == (
      f"bert-jax: error: --config {tmp_path / 'run'} is a directory; give {tmp_path / 'run' / 'config.json'} (the "
      "run's saved config)")
  assert sorted(p.name for p in tmp_path.rglob("*")) == ["config.json", "run"]


def test_config_diff_prints_what_a_recipe_changes(capsys):
  assert cli.main(["config", "--config", "roberta_base", "--diff", "bert_base"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == "roberta_base against bert_base:"
  assert {"  objective.sentence_task: 'nsp' -> 'none'", "  optimizer.b2: 0.999 -> 0.98",
          "  model.vocab_size: 30522 -> 50265", "  train.clip_norm: 1.0 -> 0.0"} <= set(lines)
  assert not any(line.startswith(("  model.hidden_size", "  optimizer.weight_decay", "+", "-")) for line in lines)
  assert cli.main(["config", "--config", "albert_base", "--diff", "--config.train.steps=7"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert "  optimizer.name: 'adamw' -> 'lamb'" in lines and "  model.share: 'none' -> 'all'" in lines
  assert "  train.steps: 1000 -> 7" in lines and "+ objective.max_ngram: 3" in lines
  assert not any("weight_decay" in line or "log_every" in line for line in lines)  # stated once, in the base


def test_cli_prints_one_line_and_exits_nonzero(capsys):
  assert cli.main(["params", "--config", "bert_tiny", "--config.model.num_heads=3"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["bert-jax: error: model.hidden_size=64 is not divisible by model.num_heads=3"]


def test_console_script_has_no_traceback_wall():
  result = subprocess.run([sys.executable, "-m", "bert_jax.cli", "params", "--config", "bert_tiny",
                           "--config.model.hiden_size=32"], capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  assert "unknown config key 'model.hiden_size'; did you mean 'model.hidden_size'?" in result.stderr


@pytest.mark.parametrize("name", config_lib.config_names())
def test_every_model_section_lists_exactly_its_familys_settings(name):
  """A family's defaults live in its settings dataclass: a config's model section holds every field of it."""
  model = config_lib.load_config(name).model
  settings = models.make_config(model)
  assert set(model) == {"family"} | {f.name for f in dataclasses.fields(settings)}


def test_xlnet_defaults_are_the_original_pretraining_memory():
  model = models.default_config("xlnet")
  assert (model.mem_len, model.reuse_len) == (384, 256)
