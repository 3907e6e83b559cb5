"""Issue 16: the tokenizer options (character model, normalization, dummy prefix, byte fallback), the model/tokenizer
mismatch error, and a Chinese text from `bert-jax tokenizer` to `pipeline("fill-mask")` on the Hugging Face export,
with the ids and logits bert-jax gives."""

import json
import re

import jax
import ml_collections
import numpy as np
import pytest
import torch
import transformers

from bert_jax import cli, config as config_lib, models
from bert_jax.convert import tokenizer_export, weights
from bert_jax.data import pipeline, tokenizer as tokenizer_lib
from bert_jax.data.sources import Source
from bert_jax.errors import UserError
from bert_jax.objectives import classification

# Sentences as a Chinese survey report writes them: full-width punctuation, numbers, a few Latin letters.
SENTENCES = """本次调查共走访了三个县的十二个村庄，收回有效问卷一千二百份。
受访者中，女性占百分之五十三，平均年龄为四十六岁。
大多数家庭的主要收入来自外出务工，其次是种植业和养殖业。
村里的年轻人大多去了城市，留下的多是老人和孩子。
关于医疗条件，有百分之六十的受访者认为“看病难”仍然是最大的问题。
乡镇卫生院的医生数量不足，设备也比较陈旧。
在教育方面，村小学的学生人数逐年减少，有的学校只剩下几十名学生。
家长们普遍希望孩子能到县城读书，但费用较高（包括房租和生活费）。
交通状况近年来明显改善：每个村都通了水泥路，公交车每天往返两次。
不过，山区的部分村庄仍然需要步行一个多小时才能到达公路。
网络覆盖率已经超过百分之九十，智能手机在中青年中十分普及。
许多农户开始通过网络销售农产品，例如茶叶、蜂蜜和干果。
合作社的作用越来越重要，它帮助农户统一采购种子和化肥。
然而，也有受访者表示，合作社的管理不够透明，分红标准不清楚。
环境问题同样值得关注：垃圾处理设施不足，河道污染时有发生。
当地政府计划在明年建设两座垃圾中转站，并加强河道巡查。
你认为村里最需要改善的是什么？大部分人的回答是“就业机会”。
调查还发现，留守老人的精神生活比较单调，缺少文化活动场所。
有的村建立了老年活动中心，每周组织两到三次集体活动。
总的来说，农村的基础设施有了很大进步，但公共服务仍有差距。
我们建议加大对乡村医生和教师的培训投入，提高他们的待遇。
同时，应当鼓励年轻人返乡创业，为他们提供小额贷款和技术支持。
数据整理工作由五名研究生完成，历时两个月。
所有问卷均采用匿名方式填写，个人信息严格保密。
报告的第二部分将详细分析各县之间的差异及其原因。""".splitlines()


def chinese_corpus(path):
  """Documents of four to six sentences each (BERT's format: one sentence a line, a blank line between), ~8 KB."""
  rng = np.random.default_rng(0)
  documents = ["\n".join(rng.choice(SENTENCES, rng.integers(4, 7), replace=False)) for _ in range(24)]
  path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
  return path


def _train(tmp_path, name, **options):
  return tokenizer_lib.train(SENTENCES * 4, tmp_path / f"{name}.model", options.pop("vocab_size", 2000),
                             options.pop("model_type", "character"), 1.0, **options)


def _pieces(tokenizer, text):
  return tokenizer.processor.encode(text, out_type=str)


def test_character_model_full_width_punctuation_and_no_lone_boundary(tmp_path):
  tok = _train(tmp_path, "char")
  characters = sorted(set("".join(SENTENCES)))
  assert tok.piece_count == len(characters) + 6  # every character a piece, plus [PAD] </s> [UNK] [CLS] [SEP] [MASK]
  for line in SENTENCES:
    assert _pieces(tok, line) == list(line)  # one piece per character, no "▁" anywhere
    assert tok.decode(tok.encode([line])[0]) == line  # full-width ，（）“”？： as written
  nfkc = _train(tmp_path, "nfkc", normalization="nfkc")
  changed = [line for line in SENTENCES if nfkc.decode(nfkc.encode([line])[0]) != line]
  assert len(changed) >= 5 and all(set(line) & set("，（）？：") for line in changed)  # what the issue saw

  unigram = dict(model_type="unigram", vocab_size=380)
  prefixed, plain = _train(tmp_path, "on", **unigram), _train(tmp_path, "off", dummy_prefix="off", **unigram)
  lone = [line for line in SENTENCES if _pieces(prefixed, line)[0] == "▁"]
  assert len(lone) > len(SENTENCES) // 2  # the lone "▁" the issue counted, with the dummy prefix on
  assert not any("▁" in piece for line in SENTENCES for piece in _pieces(plain, line))
  assert [p.replace("▁", "") for p in _pieces(prefixed, SENTENCES[0])] != []


def test_byte_fallback_leaves_no_unknown_characters(tmp_path):
  unseen = "龘齉，𠀀ŋ"
  plain = _train(tmp_path, "plain", vocab_size=2000)
  assert plain.processor.unk_id() in plain.encode([unseen])[0]
  for model_type, size in (("character", 2000), ("unigram", 630)):
    tok = _train(tmp_path, model_type, model_type=model_type, vocab_size=size, byte_fallback=True)
    ids = tok.encode([unseen + SENTENCES[0]])[0]
    assert tok.processor.unk_id() not in ids and tok.decode(ids) == unseen + SENTENCES[0]


def test_options_are_part_of_the_tokenizer_settings():
  config = config_lib.load_config("bert_tiny")
  source = Source(config.data)
  base = pipeline.tokenizer_settings(config, source)
  for key, value in (("normalization", "nfkc"), ("dummy_prefix", "off"), ("byte_fallback", True),
                     ("tokenizer_type", "character")):
    changed = config_lib.load_config("bert_tiny", [f"data.{key}={value}"])
    assert pipeline.tokenizer_settings(changed, source) != base, key
  with pytest.raises(UserError, match="data.normalization must be one of identity, nfkc, got 'nfc'"):
    tokenizer_lib.train_serialized(SENTENCES, 100, normalization="nfc")


def test_a_vocabulary_that_does_not_match_the_model_is_an_error(tmp_path, capsys):
  tok = _train(tmp_path, "char")
  ids = tok.vocab_size
  for rows in (4096, ids + 1, -(-ids // 128) * 128, ids - 1):  # the 4,096; rounded up without sentinels
    expected = f"has {ids} ids but model.vocab_size={rows}.*set --config.model.vocab_size={ids}"
    with pytest.raises(UserError, match=expected):
      tokenizer_lib.check_model_fit(tok, ml_collections.ConfigDict({"vocab_size": rows}))
  tokenizer_lib.check_model_fit(tok, ml_collections.ConfigDict({"vocab_size": ids}))
  t5 = tokenizer_lib.load(tok.path, extra_ids=100)  # T5's padding, explicit: ids with sentinels rounded up to 128
  tokenizer_lib.check_model_fit(t5, ml_collections.ConfigDict({"vocab_size": tokenizer_lib.padded_rows(ids + 100)}))
  with pytest.raises(UserError, match="model.vocab_size="):
    tokenizer_lib.check_model_fit(t5, ml_collections.ConfigDict({"vocab_size": tokenizer_lib.padded_rows(ids) + 256}))

  # A character tokenizer trained for a run: its size is the corpus' characters, and the run says so up front.
  corpus = chinese_corpus(tmp_path / "zh.txt")
  capsys.readouterr()
  argv = ["prepare", "--config", "bert_tiny", "--workdir", str(tmp_path / "w"), "--source", str(corpus),
          "--config.data.tokenizer_type=character"]
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip().splitlines()[-1]
  found = re.search(r"has (\d+) ids \(its characters and special pieces\), not model.vocab_size=4096; set "
                    r"--config.model.vocab_size=(\d+)$", err)
  assert found and found.group(1) == found.group(2), err
  assert not (tmp_path / "w" / "tokenizer").exists()


def test_export_frames_and_numbers_special_tokens_as_training(tmp_path):
  tok = _train(tmp_path, "unigram", model_type="unigram", vocab_size=380)
  t5 = tokenizer_lib.load(tok.path, extra_ids=5)
  text = "受访者中，女性占百分之五十三。"
  ids = tok.encode([text])[0]
  for model_type, tokenizer, framed in (
      ("bert", tok, [tok.cls_id, *ids, tok.sep_id]), ("roberta", tok, [tok.cls_id, *ids, tok.sep_id]),
      ("xlnet", tok, [*ids, tok.sep_id, tok.cls_id]), ("t5", t5, [*ids, tok.eos_id]),
      ("bart", tok, [tok.cls_id, *ids, tok.eos_id])):  # text_infilling's blocks: <s> (our [CLS]) ... </s>
    fast = tokenizer_export.fast_tokenizer(tokenizer, model_type)
    assert fast(text)["input_ids"] == framed, model_type
    assert fast.pad_token_id == tok.pad_id and fast.unk_token_id == tok.processor.unk_id()
  fast = tokenizer_export.fast_tokenizer(t5, "t5")
  assert [fast.convert_tokens_to_ids(f"<extra_id_{k}>") for k in range(5)] == [t5.sentinel_id(k) for k in range(5)]
  pair = tokenizer_export.fast_tokenizer(tok, "bert")("报告", "数据")
  assert pair["token_type_ids"] == [0] * (len(tok.encode(["报告"])[0]) + 2) + [1] * (len(tok.encode(["数据"])[0]) + 1)


@pytest.mark.parametrize("model_type,framing", [("bert", "bert"), ("albert", "bert"), ("electra", "bert"),
                                                ("roberta", "roberta"), ("xlnet", "xlnet"), ("bart", "bart"),
                                                ("gpt2", "gpt2")])
def test_an_export_frames_a_pair_as_fine_tuning_did(tmp_path, model_type, framing):
  """What a fine-tuned classifier's exported tokenizer gives for a pair is what it was trained on."""
  tok = _train(tmp_path, "unigram", model_type="unigram", vocab_size=380)
  texts = ["受访者中，女性占百分之五十三。", "报告 数据"]
  ids, types, mask = classification.frame(tok.encode(texts), tok, 64, framing)
  encoded = tokenizer_export.fast_tokenizer(tok, model_type)(*texts)
  assert encoded["input_ids"] == ids[mask > 0].tolist()
  assert encoded.get("token_type_ids", [0] * int(mask.sum())) == types[mask > 0].tolist()


def _cli(*argv):
  assert cli.main(list(argv)) == 0, argv


def test_chinese_text_from_tokenizer_to_fill_mask_pipeline(tmp_path, capsys):
  corpus = chinese_corpus(tmp_path / "survey.txt")
  model_path = tmp_path / "zh.model"
  _cli("tokenizer", "--config", "bert_tiny", "--source", str(corpus), "--output", str(model_path),
       "--model-type", "character", "--character-coverage", "1.0")
  ids = tokenizer_lib.load(model_path).vocab_size
  assert f"--config.model.vocab_size={ids}" in capsys.readouterr().out
  workdir = tmp_path / "run"
  overrides = [f"--config.data.source={corpus}", f"--config.data.tokenizer={model_path}",
               f"--config.model.vocab_size={ids}", "--config.data.eval_documents=4", "--config.train.steps=3",
               "--config.train.batch_size=8", "--config.train.log_every=1", "--config.checkpoint.every=3",
               "--config.eval.batches=1", "--config.eval.batch_size=8", "--config.data.shards=2"]
  _cli("prepare", "--config", "bert_tiny", "--workdir", str(workdir), *overrides)
  _cli("train", "--config", "bert_tiny", "--workdir", str(workdir), *overrides)
  _cli("evaluate", "--config", "bert_tiny", "--workdir", str(workdir), *overrides)
  assert json.loads((workdir / "eval" / "3.json").read_text())["step"] == 3
  export = tmp_path / "hf"
  _cli("convert", "--to-hf", "--config", "bert_tiny", "--params", str(workdir / "checkpoints" / "3"),
       "--output", str(export), *overrides[:3])  # the tokenizer: data.tokenizer
  export_from_run = tmp_path / "hf_run"
  _cli("convert", "--to-hf", "--config", "bert_tiny", "--params", str(workdir / "checkpoints" / "3"),
       "--output", str(export_from_run), f"--config.model.vocab_size={ids}")  # found through the run's data
  for directory in (export, export_from_run):
    assert all((directory / name).is_file() for name in tokenizer_export.FILES)
  assert (export / "tokenizer.json").read_bytes() == (export_from_run / "tokenizer.json").read_bytes()

  config = config_lib.load_config("bert_tiny", overrides)
  ours = pipeline.load_tokenizer(config, workdir)
  hf_tokenizer = transformers.AutoTokenizer.from_pretrained(export)
  texts = [SENTENCES[4], SENTENCES[8], SENTENCES[16]]
  for text in texts:
    assert hf_tokenizer(text)["input_ids"] == [ours.cls_id, *ours.encode([text])[0], ours.sep_id]
  assert (hf_tokenizer.mask_token_id, hf_tokenizer.pad_token_id) == (ours.mask_id, ours.pad_id)

  batch = hf_tokenizer(texts, padding=True, return_tensors="np")
  model = models.build_model(config.model)
  params = weights.restore_params(workdir / "checkpoints" / "3")
  our_logits = np.asarray(jax.jit(model.apply)({"params": params}, batch["input_ids"], batch["token_type_ids"],
                                               batch["attention_mask"])["mlm_logits"])
  hf_model = transformers.AutoModelForMaskedLM.from_pretrained(export).eval()
  with torch.no_grad():
    hf_logits = hf_model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
  real = batch["attention_mask"].astype(bool)
  assert np.abs(our_logits - hf_logits)[real].max() < 1e-4

  masked = SENTENCES[2].replace("务", "[MASK]")  # 大多数家庭的主要收入来自外出[MASK]工，...
  fill = transformers.pipeline("fill-mask", model=str(export), tokenizer=str(export), top_k=5)
  predictions = fill(masked)
  encoded = hf_tokenizer(masked)["input_ids"]
  before, after = masked.split("[MASK]")
  assert encoded == [ours.cls_id, *ours.encode([before])[0], ours.mask_id, *ours.encode([after])[0], ours.sep_id]
  outputs = model.apply({"params": params}, np.array([encoded]), np.zeros((1, len(encoded)), int),
                        np.ones((1, len(encoded)), int))
  our_mask_logits = np.asarray(outputs["mlm_logits"])[0, encoded.index(ours.mask_id)]
  assert [p["token"] for p in predictions] == list(np.argsort(-our_mask_logits)[:5])
  special = ours.special_mask()
  pieces = [p for p in predictions if not special[p["token"]]]  # a 3-step model may still rank [PAD] high
  assert pieces
  for p in pieces:  # one character in place of the mask, no stray "▁"
    assert p["token_str"] == ours.processor.id_to_piece(p["token"]) and len(p["token_str"]) == 1
    assert p["sequence"] == masked.replace("[MASK]", p["token_str"])


def test_an_imported_tokenizer_goes_out_as_it_came_in(tmp_path):
  from tokenizers import Tokenizer, models as tk_models, normalizers, pre_tokenizers

  from bert_jax.data import hf_tokenizer
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "survey", "the", "village", "##s", "of", "."]
  wordpiece = Tokenizer(tk_models.WordPiece({p: i for i, p in enumerate(vocab)}, unk_token="[UNK]"))
  wordpiece.normalizer, wordpiece.pre_tokenizer = normalizers.BertNormalizer(), pre_tokenizers.BertPreTokenizer()
  wordpiece.add_special_tokens(vocab[:5])
  wordpiece.save(str(tmp_path / "tokenizer.json"))
  imported = hf_tokenizer.load(tmp_path / "tokenizer.json")
  fast = tokenizer_export.fast_tokenizer(imported, "bert")
  text = "The survey of the villages ."
  assert fast(text)["input_ids"] == [imported.cls_id, *imported.encode([text])[0], imported.sep_id] == [2, 6, 5, 9, 6,
                                                                                                        7, 8, 10, 3]
  assert fast("the [MASK] .")["input_ids"] == [2, 6, imported.mask_id, 10, 3]
