"""Continued pretraining of an imported Hugging Face checkpoint with its own tokenizer, one test per tokenizer kind:
WordPiece vocab.txt (BERT), byte-level BPE vocab.json + merges.txt (RoBERTa), SentencePiece spiece.model (T5, with
its sentinels) and a fast tokenizer.json (ALBERT's, which lower-cases). Tiny tokenizers are trained here and saved
next to a tiny random transformers model; nothing is downloaded. `convert --from-hf`, `prepare` and `train --init`
run through the CLI; the prepared ids must be what the Hugging Face tokenizer gives for the text, the objective's
special tokens the checkpoint's, and the run's step 0 the imported parameters."""

import io
import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # local directories only (read when huggingface_hub is imported)

from hf_helpers import TINY, hf_bert, hf_corpus, sentences
import numpy as np
import pytest
import sentencepiece as spm
import tokenizers
import torch
import transformers

from bert_jax import cli, config as config_lib
from bert_jax.convert import weights
from bert_jax.data import pipeline
from bert_jax.errors import UserError
from bert_jax.objectives import get_objective


def _sentencepiece(documents, **ids) -> bytes:
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences(documents)), model_writer=model, vocab_size=80,
                                 bos_id=-1, minloglevel=2, **ids)
  return model.getvalue()


def _roberta(hf_dir: Path, documents):
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator(sentences(documents), vocab_size=320, special_tokens=["<s>", "<pad>", "</s>", "<unk>",
                                                                                   "<mask>"])
  bpe.save_model(str(hf_dir))
  hf = transformers.RobertaTokenizer(str(hf_dir / "vocab.json"), str(hf_dir / "merges.txt"))
  model = transformers.RobertaForMaskedLM(transformers.RobertaConfig(
      vocab_size=len(hf), max_position_embeddings=66, type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5, **TINY))
  return hf, model


def _t5(hf_dir: Path, documents):
  (hf_dir / "spiece.model").write_bytes(_sentencepiece(documents, pad_id=0, eos_id=1, unk_id=2))
  hf = transformers.T5Tokenizer.from_pretrained(str(hf_dir))  # 100 sentinels on top, as T5's
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(
      vocab_size=len(hf), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, dropout_rate=0.0,
      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
  return hf, model


def _albert(hf_dir: Path, documents):
  """A fast tokenizer saved as transformers saves one: tokenizer.json (+ tokenizer_config.json), no .model."""
  spm_dir = hf_dir.parent / "albert_spm"
  spm_dir.mkdir()
  (spm_dir / "spiece.model").write_bytes(_sentencepiece(documents, pad_id=0, unk_id=1, eos_id=-1,
                                                        control_symbols=["[CLS]", "[SEP]", "[MASK]"]))
  transformers.AlbertTokenizer.from_pretrained(str(spm_dir)).save_pretrained(str(hf_dir))
  hf = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
  model = transformers.AlbertForPreTraining(transformers.AlbertConfig(
      vocab_size=len(hf), embedding_size=16, max_position_embeddings=64, **TINY))
  return hf, model


KINDS = {"vocab.txt": (hf_bert, "bert.", "tokenizer.json"), "vocab.json+merges.txt": (_roberta, "roberta.",
                                                                                     "tokenizer.json"),
         "spiece.model": (_t5, "", "spiece.model"), "tokenizer.json": (_albert, "albert.", "tokenizer.json")}
OVERRIDES = ["data.shards=1", "data.eval_documents=2", "data.seq_len=32", "train.steps=2", "train.batch_size=8",
             "train.log_every=1", "checkpoint.every=0", "eval.batches=1", "eval.batch_size=8",
             "optimizer.warmup_steps=1", "objective.max_predictions=5"]


@pytest.mark.parametrize("kind", KINDS)
def test_continued_pretraining_keeps_the_checkpoints_ids(kind, tmp_path, capsys):
  build, prefix, imported_file = KINDS[kind]
  corpus, documents = hf_corpus(tmp_path)
  hf_dir = tmp_path / "hf"
  hf_dir.mkdir()
  torch.manual_seed(0)
  hf, model = build(hf_dir, documents)
  model.save_pretrained(str(hf_dir))
  out, workdir = tmp_path / "imported", tmp_path / "run"

  assert cli.main(["convert", "--from-hf", str(hf_dir), "--output", str(out)]) == 0
  assert (out / imported_file).is_file()
  config_path = str(out / "config.py")
  overrides = [f"data.source={corpus}", *OVERRIDES]
  if kind == "spiece.model":  # span corruption has no max_predictions
    overrides = [o for o in overrides if not o.startswith("objective.")]
  config = config_lib.load_config(config_path, overrides)
  assert Path(config.data.tokenizer) == out / imported_file
  flags = [f"--config.{o}" for o in overrides]
  assert cli.main(["prepare", "--config", config_path, *flags, "--workdir", str(workdir)]) == 0

  # The prepared documents (eval first, then train: one shard of each) are the HF tokenizer's ids of the text.
  tokenizer = pipeline.load_tokenizer(config, workdir)
  prepared = [d["token_ids"].numpy().tolist() for split in ("eval", "train")
              for d in pipeline.documents(config, workdir, split)]
  expected = [[i for s in doc for i in hf(s, add_special_tokens=False)["input_ids"]] for doc in documents]
  assert prepared == expected
  assert tokenizer.vocab_size == len(hf) and tokenizer.pad_id == hf.pad_token_id

  # The objective places the checkpoint's own special tokens.
  objective = get_objective(config)
  examples = list(objective.dataset(pipeline.documents(config, workdir, "train"), tokenizer, 0, True).take(8))
  if kind == "spiece.model":
    inputs = np.stack([e["encoder_input_tokens"].numpy() for e in examples])
    assert tokenizer.sentinel_id(0) == hf.convert_tokens_to_ids("<extra_id_0>") == len(hf) - 1
    assert (inputs == hf.convert_tokens_to_ids("<extra_id_0>")).any()
    assert (inputs == hf.eos_token_id).sum() >= len(examples)
  else:
    inputs = np.stack([e["input_ids"].numpy() for e in examples])
    assert (inputs[:, 0] == hf.cls_token_id).all()
    assert ((inputs == hf.sep_token_id).sum(1) >= 1).all()
    assert (inputs == hf.mask_token_id).any()
    plain = inputs[(inputs != hf.cls_token_id) & (inputs != hf.sep_token_id) & (inputs != hf.pad_token_id)
                   & (inputs != hf.mask_token_id)]
    assert set(plain.tolist()) <= set(range(len(hf))) - set(hf.all_special_ids)

  # train --init: step 0 is the import, the run trains on the prepared ids.
  capsys.readouterr()
  assert cli.main(["train", "--config", config_path, *flags, "--init", str(out), "--workdir", str(workdir)]) == 0
  assert f"starting from the parameters in {out}" in capsys.readouterr().err
  imported = weights.restore_params(out / "params")
  start = weights.restore_params(workdir / "checkpoints" / "0")
  for a, b in zip(*(jax_leaves(t) for t in (imported, start)), strict=True):
    np.testing.assert_array_equal(a, b)
  trained = weights.restore_params(workdir / "checkpoints" / "2")
  assert any(not np.array_equal(a, b) for a, b in zip(jax_leaves(imported), jax_leaves(trained)))
  metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert all(np.isfinite(m["loss"]) for m in metrics if "loss" in m)
  if prefix == "bert.":
    _check_step0_logits(model, start, config, inputs)
    assert cli.main(["train", "--config", config_path, *flags, "--init", str(out), "--workdir", str(workdir)]) == 0
    assert f"ignoring --init {out}" in capsys.readouterr().err


def jax_leaves(tree) -> list:
  import jax
  return jax.tree_util.tree_leaves(tree)


def _check_step0_logits(hf_model, params, config, input_ids) -> None:
  """The run's step-0 parameters give the HF model's MLM logits on the objective's sequences."""
  from bert_jax import models

  ours = models.build_model(config.model).apply({"params": params}, input_ids, np.zeros_like(input_ids),
                                                np.ones_like(input_ids))["mlm_logits"]
  with torch.no_grad():
    theirs = hf_model.eval()(input_ids=torch.tensor(input_ids, dtype=torch.long)).prediction_logits.numpy()
  np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4)


def test_a_file_that_is_not_a_tokenizer_is_one_clear_error(tmp_path):
  bad = tmp_path / "tokenizer.json"
  bad.write_text("{not json")
  from bert_jax.data import tokenizer as tokenizer_lib
  with pytest.raises(UserError, match="is not a Hugging Face tokenizer.json"):
    tokenizer_lib.load(bad)


def test_a_published_gpt2_continues_pretraining_with_its_own_tokenizer(tmp_path, capsys):
  """GPT-2's vocab.json + merges.txt hold one special token, <|endoftext|>: it ends each document and pads."""
  corpus, documents = hf_corpus(tmp_path)
  hf_dir = tmp_path / "hf"
  hf_dir.mkdir()
  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator(sentences(documents), vocab_size=300, special_tokens=["<|endoftext|>"])
  bpe.save_model(str(hf_dir))
  hf = transformers.GPT2Tokenizer(str(hf_dir / "vocab.json"), str(hf_dir / "merges.txt"))
  end = hf.convert_tokens_to_ids("<|endoftext|>")
  torch.manual_seed(0)
  transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=len(hf), n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=end,
      eos_token_id=end)).save_pretrained(str(hf_dir))
  out, workdir = tmp_path / "imported", tmp_path / "run"
  assert cli.main(["convert", "--from-hf", str(hf_dir), "--output", str(out)]) == 0
  config_path = str(out / "config.py")
  overrides = [f"data.source={corpus}", *[o for o in OVERRIDES if not o.startswith("objective.")]]
  flags = [f"--config.{o}" for o in overrides]
  assert cli.main(["train", "--config", config_path, *flags, "--init", str(out), "--workdir", str(workdir)]) == 0
  config = config_lib.load_config(config_path, overrides)
  tokenizer = pipeline.load_tokenizer(config, workdir)
  assert tokenizer.pad_id == tokenizer.eod_id == end == config.model.pad_token_id
  prepared = [d["token_ids"].numpy().tolist() for split in ("eval", "train")
              for d in pipeline.documents(config, workdir, split)]
  assert prepared == [[i for s in doc for i in hf(s)["input_ids"]] for doc in documents]
  windows = next(get_objective(config).dataset(pipeline.documents(config, workdir, "train"), tokenizer, 0, True)
                 .batch(4).as_numpy_iterator())["input_ids"]
  assert (windows == end).any()  # documents packed with <|endoftext|> between them
  metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [m["step"] for m in metrics if "loss" in m] == [1, 2] and all(np.isfinite(m["loss"]) for m in metrics
                                                                         if "loss" in m)
