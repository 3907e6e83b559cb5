"""`bert-jax train --config ernie_tiny` end to end on a tiny Chinese corpus (a folder of files, one document each):
the README's commands, a character tokenizer, jieba's knowledge units prepared with the data, and training through
its masking stages (characters, phrases, entities), stopped and resumed in the middle of one."""

import json
import math

from ernie_helpers import DOCUMENT_SENTENCES, SENTENCES

from bert_jax import cli

STAGES = "((2, 'piece'), (2, 'phrase'), (2, 'entity'))"  # 2 steps of 32 sequences: one masking group each


def test_ernie_tiny_trains_through_its_stages(tmp_path, capsys):
  corpus = tmp_path / "zh"
  corpus.mkdir()
  for k in range(0, len(SENTENCES), DOCUMENT_SENTENCES):
    (corpus / f"{k:02d}.txt").write_text("\n".join(SENTENCES[k:k + DOCUMENT_SENTENCES]) + "\n")
  data = [f"--config.data.source={corpus}", "--config.data.text_format=files"]
  assert cli.main(["tokenizer", "--config", "ernie_tiny", "--source", str(corpus), *data[1:], "--model-type",
                   "character", "--vocab-size", "4096", "--output", str(tmp_path / "zh.model")]) == 0
  flags = capsys.readouterr().out.strip().splitlines()[-1].removeprefix("use it with ").split()
  run = ["train", "--config", "ernie_tiny", "--workdir", str(tmp_path / "run"), *flags, *data,
         "--config.data.eval_tokens=100", f"--config.objective.stages={STAGES}", "--config.train.log_every=1",
         "--config.checkpoint.every=3", "--config.optimizer.warmup_steps=2"]
  assert cli.main([*run, "--config.train.steps=3"]) == 0  # stops in the phrase stage
  assert cli.main([*run, "--config.train.steps=6"]) == 0  # resumes there, and goes on to entities
  records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  losses = {r["step"]: r["mlm_loss"] for r in records if "mlm_loss" in r}
  assert sorted(losses) == [1, 2, 3, 4, 5, 6]
  assert all(math.isfinite(loss) and 0 < loss < 2 * math.log(4096) for loss in losses.values()), losses
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  assert config["model"]["family"] == "ernie" and config["data"]["word_segmenter"] == "jieba_pos"
  assert [tuple(stage) for stage in config["objective"]["stages"]] == [(2, "piece"), (2, "phrase"), (2, "entity")]
