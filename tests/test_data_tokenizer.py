"""SentencePiece tokenizers: special pieces where the model wants them, T5 sentinels on top, Chinese text,
loading, and the errors a user can hit."""

import ml_collections
import numpy as np
import pytest

from bert_jax.data import tokenizer as tokenizer_lib
from bert_jax.data.sources import Source
from bert_jax.errors import UserError

DEMO = ml_collections.ConfigDict({"source": "demo", "text_format": "sentences", "jsonl_field": "text"})


@pytest.fixture(scope="module")
def demo_sentences() -> list[str]:
  return list(Source(DEMO).sentences())


@pytest.fixture(scope="module")
def demo_tokenizer(tmp_path_factory, demo_sentences) -> tokenizer_lib.Tokenizer:
  return tokenizer_lib.train(demo_sentences, tmp_path_factory.mktemp("tok") / "demo.model", 1000)


def test_special_layout_follows_the_model_pad_id(tmp_path, demo_sentences, demo_tokenizer):
  for pad_id, expected in [(0, {"[PAD]": 0, "</s>": 1, "[UNK]": 2, "[CLS]": 3, "[SEP]": 4, "[MASK]": 5}),
                           (1, {"</s>": 0, "[PAD]": 1, "[UNK]": 2, "[CLS]": 3, "[SEP]": 4, "[MASK]": 5})]:
    tok = demo_tokenizer if pad_id == 0 else tokenizer_lib.train(demo_sentences, tmp_path / "pad1.model", 1000,
                                                                 pad_id=1)
    assert tokenizer_lib.special_layout(pad_id) == expected
    assert (tok.pad_id, tok.eos_id, tok.cls_id, tok.sep_id, tok.mask_id) == tuple(
        expected[p] for p in ("[PAD]", "</s>", "[CLS]", "[SEP]", "[MASK]"))
    assert tok.vocab_size == 1000
    assert np.flatnonzero(tok.special_mask()).tolist() == sorted(expected.values())
    # Control pieces never come out of text: a literal "[MASK]" is ordinary text.
    assert tok.mask_id not in tok.encode(["a [MASK] b [SEP]"])[0]


def test_bpe_and_t5_sentinels(tmp_path, demo_sentences):
  tok = tokenizer_lib.train(demo_sentences, tmp_path / "t5.model", 1100, model_type="bpe", extra_ids=100)
  assert tok.piece_count == 1000 and tok.vocab_size == 1100
  assert tok.sentinel_id(0) == 1099 and tok.sentinel_id(99) == 1000
  assert tok.special_mask()[1000:].all() and not tok.special_mask()[10:1000].any()
  with pytest.raises(ValueError):
    tok.sentinel_id(100)
  reloaded = tokenizer_lib.load(tmp_path / "t5.model", extra_ids=100)
  assert reloaded.vocab_size == 1100 and reloaded.sha256() == tok.sha256()
  text = "The assert statement is a convenient way to insert debugging assertions."
  assert reloaded.decode(reloaded.encode([text])[0]) == text


def test_chinese_text(tmp_path):
  words = ["我们", "今天", "学习", "机器", "翻译", "语言", "模型", "中文", "分词", "测试", "句子", "预测", "北京",
           "中国", "首都", "天气", "公园", "散步", "朋友", "老师", "学生", "电脑", "程序", "数据", "时间",
           "城市", "音乐"]
  rng = np.random.default_rng(0)
  sentences = ["".join(rng.choice(words, rng.integers(3, 9))) + "。" for _ in range(400)]
  tok = tokenizer_lib.train(sentences, tmp_path / "zh.model", 120, character_coverage=1.0)
  ids = tok.encode(["今天我们学习语言模型。"])[0]
  assert tok.processor.unk_id() not in ids and len(ids) >= 5
  assert tok.decode(ids) == "今天我们学习语言模型。"
  # For whole-word masking a piece that begins with a CJK character begins a word; punctuation continues one.
  pieces = [tok.processor.id_to_piece(i) for i in ids]
  assert tok.word_starts()[ids].tolist() == [p[-1] != "。" for p in pieces]


def test_word_starts_follow_whitespace(demo_tokenizer):
  tok = demo_tokenizer
  ids = tok.encode(["assignment statements rebind names"])[0]
  pieces = [tok.processor.id_to_piece(i) for i in ids]
  assert tok.word_starts()[ids].tolist() == [p.startswith("\u2581") for p in pieces]
  assert tok.word_starts()[ids].sum() == 4


def test_document_end_is_xlnet_eod_where_the_vocabulary_has_it(tmp_path, demo_sentences, demo_tokenizer):
  import sentencepiece as spm
  import tokenizers

  from bert_jax.data import hf_tokenizer

  assert demo_tokenizer.eod_id == demo_tokenizer.eos_id  # our own vocabularies end documents with </s>
  prefix = str(tmp_path / "xlnet_like")
  spm.SentencePieceTrainer.train(sentence_iterator=iter(demo_sentences[:2000]), model_prefix=prefix, vocab_size=300,
                                 user_defined_symbols=["<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"])
  xlnet_like = tokenizer_lib.load(prefix + ".model")
  assert xlnet_like.eod_id == xlnet_like.processor.piece_to_id("<eod>") != xlnet_like.eos_id
  words = tokenizers.models.WordLevel({"[UNK]": 0, "</s>": 1, "<eod>": 2, "a": 3}, unk_token="[UNK]")
  hf = hf_tokenizer.HFTokenizer(tokenizers.Tokenizer(words))
  assert (hf.eod_id, hf.eos_id) == (2, 1)


def test_errors(tmp_path, demo_sentences, demo_tokenizer):
  with pytest.raises(UserError, match=r"too large for this corpus \(at most \d+\).*model.vocab_size="):
    tokenizer_lib.train(demo_sentences[:30], tmp_path / "big.model", 4096)
  assert not (tmp_path / "big.model").exists()
  with pytest.raises(UserError, match="corpus is empty"):
    tokenizer_lib.train(["", "  "], tmp_path / "empty.model", 100)
  with pytest.raises(UserError, match="does not exist"):
    tokenizer_lib.load(tmp_path / "missing.model")
  (tmp_path / "junk.model").write_bytes(b"not a model")
  with pytest.raises(UserError, match="not a SentencePiece model"):
    tokenizer_lib.load(tmp_path / "junk.model")
  tok = demo_tokenizer
  model = ml_collections.ConfigDict({"vocab_size": 512, "pad_token_id": 0})
  with pytest.raises(UserError, match="model.vocab_size=1000"):
    tokenizer_lib.check_model_fit(tok, model)
  model.update(vocab_size=1000, pad_token_id=1)
  with pytest.raises(UserError, match="model.pad_token_id=0"):
    tokenizer_lib.check_model_fit(tok, model)
