"""The tiny T5 end to end: the demo corpus through `bert-jax train` on a (data, fsdp, tensor) mesh, the same
losses on one device, and greedy decodes of held-out examples as readable text."""

import json

import jax
import numpy as np
import pytest

from bert_jax import cli, config as config_lib
from bert_jax.data import pipeline
from bert_jax.objectives import get_objective, span_corruption
from bert_jax.train.metrics_writer import MetricsWriter
from bert_jax.train.trainer import Trainer

STEPS = 6
COMMON = ["train.batch_size=16", f"train.steps={STEPS}", "train.log_every=1", "optimizer.warmup_steps=2",
          "eval.batch_size=8", "eval.batches=1"]
SHARDED = ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"]


def tiny_config(*overrides: str):
  return config_lib.load_config("t5_tiny", list(overrides))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("t5")
  assert cli.main(["train", "--config", "t5_tiny", "--workdir", str(workdir),
                   *[f"--config.{o}" for o in (*COMMON, *SHARDED)]]) == 0
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return workdir, records


def test_demo_corpus_rows_carry_the_tokenizers_sentinels(run):
  workdir, _ = run
  config = tiny_config(*COMMON)
  tokenizer = pipeline.load_tokenizer(config, workdir)
  assert tokenizer.extra_ids == 100 and tokenizer.sentinel_id(0) == 4095
  batch = next(iter(pipeline.train_dataset(config, get_objective(config), workdir)))
  spec = span_corruption.SpanCorruption(config).feature_spec(16)
  assert {k: tuple(v.shape) for k, v in batch.items()} == {k: shape for k, (shape, _) in spec.items()}
  inputs = batch["encoder_input_tokens"].numpy()
  assert np.all((inputs == 4095).sum(1) == 1)  # every row has exactly one <extra_id_0> ...
  assert np.all(inputs[:, -1] == tokenizer.eos_id)  # ... and full-length chunks fill the inputs up to EOS


def test_sharded_run_equals_one_device_and_decodes_text(run):
  workdir, records = run
  sharded = np.array([r["loss"] for r in records])
  assert len(sharded) == STEPS and sharded[-1] < sharded[0] - 0.5  # it learns
  config = tiny_config(*COMMON)
  trainer = Trainer(config, jax.devices()[:1])
  state, one_device = trainer.run(trainer.init_state(), trainer.batches(str(workdir)),
                                  MetricsWriter(str(workdir), STEPS, enabled=False))
  np.testing.assert_allclose([r["loss"] for r in one_device], sharded, rtol=1e-5)

  batch = next(iter(pipeline.eval_dataset(config, get_objective(config), workdir)))
  tokenizer = pipeline.load_tokenizer(config, workdir)
  params, model, eos = jax.device_get(state.params), trainer.eval_model, config.model.eos_token_id
  rows = {k: v.numpy()[:2] for k, v in batch.items()}
  examples = trainer.objective.decode_examples(model, params, rows, tokenizer, count=2)
  assert len(examples) == 2
  # Greedy: every token up to EOS is the argmax of the decoder's logits given the tokens before it (decoding starts
  # from id 0), and nothing follows EOS.
  decoded = np.asarray(trainer.objective.greedy_decode(model, params, rows))
  first = (rows["encoder_segment_ids"] == 1).astype(np.int32)
  encoded = model.apply({"params": params}, rows["encoder_input_tokens"] * first, first, method="encode")
  previous = np.pad(decoded[:, :-1], [(0, 0), (1, 0)])
  logits = model.apply({"params": params}, encoded, previous, first, np.ones_like(previous), method="decode")
  for example, ids, row_logits in zip(examples, decoded, np.asarray(logits)):
    assert "<extra_id_0>" in example["inputs"] and example["targets"].startswith("<extra_id_0>")
    end = list(ids).index(eos) + 1 if eos in ids else len(ids)
    np.testing.assert_array_equal(ids[:end], row_logits[:end].argmax(-1))
    assert not ids[end:].any()
    # ... and the text shown is those tokens up to EOS (padding left out), each sentinel written <extra_id_N>.
    pieces = [f"<extra_id_{tokenizer.vocab_size - 1 - i}>" if i >= tokenizer.piece_count else tokenizer.decode([i])
              for i in ids[:end] if i not in (0, eos)]
    assert example["predicted"].replace(" ", "") == "".join(pieces).replace(" ", ""), (example, ids[:end])
