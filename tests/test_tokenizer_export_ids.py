"""Issue 37: an exported tokenizer, loaded with `AutoTokenizer.from_pretrained`, gives exactly the ids training gave:
on characters outside the vocabulary (runs of them one [UNK], or their bytes), unusual whitespace, NFKC-sensitive and
decomposed characters, emoji and mixed scripts; for every kind of tokenizer we train (unigram, BPE and character
SentencePiece models with each normalization, byte fallback and dummy prefix; byte-level BPE) and for imported ones
(vocab.txt, tokenizer.json); framed as each family's objectives frame a text.

Not compared: text that holds the name of a special token ("[MASK]", "<extra_id_0>", "[SEP]"): the export reads it
as that token, as Hugging Face tokenizers do and fill-mask pipelines need, where training never does."""

import os
import random
import unicodedata

os.environ["HF_HUB_OFFLINE"] = "1"  # local directories only (read when huggingface_hub is imported)

import pytest
import tokenizers
import transformers

from bert_jax.convert import tokenizer_export
from bert_jax.data import hf_tokenizer, tokenizer as tokenizer_lib
from bert_jax.objectives import classification

LINES = """本次调查共走访了三个县的十二个村庄，收回有效问卷一千二百份。
受访者中，女性占百分之五十三，平均年龄为四十六岁。
网络覆盖率已经超过百分之九十，智能手机在中青年中十分普及。
许多农户开始通过网络销售农产品，例如茶叶、蜂蜜和干果。
The survey covered three counties and twelve villages; 1,200 valid questionnaires came back.
Most households earn their main income from migrant work, then from farming and livestock.
Café, naïve, résumé: accents in French words; Ärger über Öl und Übermut.
Опрос охватил три уезда и двенадцать деревень, вернулось 1200 анкет.
شمل المسح ثلاث مقاطعات واثنتي عشرة قرية.
सर्वेक्षण में तीन जिलों और बारह गांवों को शामिल किया गया।
Village doctors 🙂 and teachers 👍 need training.""".splitlines()

# None of 首 项 龘 𠀀 is in LINES: they have no piece.
TEXTS = [
    "首项目的第一项，首先。",
    "村庄首项 village 首\t项",
    "𠀀𠀁 rare ideographs 龘齉 and Latin",
    "\tThe  survey\t\tcovered   three counties.  ",
    "  leading and trailing  ",
    "non\u00a0breaking\u00a0space and ideographic\u3000space\u3000here",
    "\u3000\u3000全角空格开头的段落 ",
    "line one\nline two\r\nline three\n",
    "\n\nleading newlines",
    "ｆｕｌｌ－ｗｉｄｔｈ ＡＢＣ １２３ ﬁnance ﬂow ① ② ℃ ㎏ ™ … ～",
    "emoji 👩‍👩‍👧‍👦 family, flag 🇨🇳, thumbs 👍🏽, ❤️ heart, keycap 1️⃣",
    "Кириллица с ёжиком; عربي مع تشكيل: مَرْحَبًا; देवनागरी में नमस्ते, क़ क्षत्रिय",
    "combining: e\u0301 a\u0308 n\u0303 vs é ä ñ; e\u0301\u093f; \u00a0\u0902",
    unicodedata.normalize("NFD", "Tiếng Việt có dấu; 한국어 텍스트") + "; ｶﾞｷﾞ ﾊﾟ; か\u3099",
    "mixed 中文English混合Русский123",
    "\u2581literal marks \u2581 and \u2581\u2581 here\u2581",
    "bytes <0x41><0xE4> in text",
    "zero\u200bwidth\u200d joiner \ufeff bom, control\x01 chars\x7f",
    "",
    "   ",
]
# (model type, normalization, byte fallback, dummy prefix): every SentencePiece option, the dummy prefix as auto
# and as the other setting.
SENTENCEPIECE = [(model_type, normalization, fallback, prefix)
                 for model_type in ("unigram", "bpe", "character") for normalization in ("identity", "nfkc")
                 for fallback in (False, True) for prefix in ("auto", "off" if model_type != "character" else "on")]
BYTE_BPE = [("byte_bpe", normalization, False, prefix) for normalization in ("identity", "nfkc")
            for prefix in ("auto", "off")]
KINDS = [*SENTENCEPIECE, *BYTE_BPE, "vocab.txt", "tokenizer.json"]
# Hugging Face model_type -> our framing of one text (classification.frame; T5 ends it with </s>).
FAMILIES = {"bert": "bert", "electra": "bert", "albert": "bert", "roberta": "roberta", "xlnet": "xlnet", "t5": None,
            "gpt2": "gpt2", "bart": "bart"}


def _name(kind) -> str:
  return kind if isinstance(kind, str) else "-".join(str(part) for part in kind)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
  """LINES and 300 lines of their words (or characters) shuffled: enough text for a few hundred pieces."""
  rng = random.Random(0)
  spaced = [w for line in LINES if " " in line for w in line.split()]
  unspaced = [c for line in LINES if " " not in line for c in line]
  return LINES + [" ".join(rng.choices(spaced, k=12)) for _ in range(150)] + \
      ["".join(rng.choices(unspaced, k=16)) for _ in range(150)]


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
  """kind -> the tokenizer training uses (for SentencePiece kinds, with three T5 sentinels on top)."""
  root = tmp_path_factory.mktemp("tokenizers")
  found = {}
  for kind in KINDS:
    path = root / _name(kind)
    if kind == "vocab.txt":
      found[kind] = _import(path, _wordpiece(corpus))
    elif kind == "tokenizer.json":
      found[kind] = _import(path, _unigram_json(corpus))
    else:
      model_type, normalization, fallback, prefix = kind
      size = {"unigram": 420 + 256 * fallback, "bpe": 800, "character": 2000, "byte_bpe": 400}[model_type]
      options = dict(normalization=normalization, dummy_prefix=prefix)
      if model_type == "byte_bpe":
        found[kind] = tokenizer_lib.train(corpus, path.with_suffix(".json"), size, model_type, pad_id=1, **options)
      else:
        tokenizer_lib.train(corpus, path.with_suffix(".model"), size, model_type, 1.0, byte_fallback=fallback,
                            **options)
        found[kind] = tokenizer_lib.load(path.with_suffix(".model"), extra_ids=3)
  return found


def _wordpiece(corpus) -> tokenizers.BertWordPieceTokenizer:
  """What a BERT checkpoint's vocab.txt holds (lower case, as BertTokenizer's default)."""
  trainer = tokenizers.BertWordPieceTokenizer(lowercase=True)
  trainer.train_from_iterator(corpus, vocab_size=600, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
  return trainer


def _unigram_json(corpus) -> tokenizers.SentencePieceUnigramTokenizer:
  """A fast tokenizer as a checkpoint's tokenizer.json holds one."""
  unigram = tokenizers.SentencePieceUnigramTokenizer()
  unigram.train_from_iterator(corpus, vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>", "<s>", "<mask>"],
                              unk_token="<unk>")
  return unigram


def _import(directory, trained_tokenizer):
  """`convert --from-hf`'s import of the files a Hugging Face checkpoint holds: its vocab.txt or tokenizer.json."""
  source = directory / "hf"
  source.mkdir(parents=True)
  if isinstance(trained_tokenizer, tokenizers.BertWordPieceTokenizer):
    trained_tokenizer.save_model(str(source))
  else:
    trained_tokenizer.save(str(source / "tokenizer.json"))
  path, _ = hf_tokenizer.import_files(source, directory)
  return tokenizer_lib.load(path)


def _export(tokenizer, model_type: str, directory):
  directory.mkdir()
  tokenizer_export.write(tokenizer_export.fast_tokenizer(tokenizer, model_type), tokenizer, directory)
  return transformers.AutoTokenizer.from_pretrained(directory)


def _framed(tokenizer, ids: list[int], family: str | None) -> list[int]:
  if family is None:  # T5: span corruption's inputs and targets end with </s>
    return [*ids, tokenizer.eos_id]
  input_ids, _, mask = classification.frame([ids], tokenizer, len(ids) + 3, family)
  return input_ids[mask > 0].tolist()


def _mismatches(ours: list[list[int]], theirs: list[list[int]]) -> list[str]:
  return [f"{text!r}: trained {a}, exported {b}" for text, a, b in zip(TEXTS, ours, theirs) if a != b]


@pytest.mark.parametrize("kind", KINDS, ids=_name)
def test_the_export_gives_trainings_ids(kind, trained, tmp_path):
  tokenizer = trained[kind]
  ours = tokenizer.encode(TEXTS)
  if kind in SENTENCEPIECE and not kind[2]:  # SentencePiece reads a run of characters without a piece as one [UNK]
    assert tokenizer.encode(["首项"])[0].count(tokenizer.processor.unk_id()) == 1
  exported = _export(tokenizer, "bert", tmp_path / "bert")
  wrong = _mismatches(ours, exported(TEXTS, add_special_tokens=False)["input_ids"])
  assert not wrong, f"{len(wrong)} of {len(TEXTS)} texts differ:\n" + "\n".join(wrong)
  assert exported(TEXTS)["input_ids"] == [[tokenizer.cls_id, *ids, tokenizer.sep_id] for ids in ours]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", [("unigram", "nfkc", True, "auto"), ("character", "identity", False, "auto"),
                                  ("byte_bpe", "identity", False, "auto"), "vocab.txt"], ids=_name)
def test_each_family_frames_a_text_as_its_objectives(kind, family, trained, tmp_path):
  tokenizer = trained[kind]
  exported = _export(tokenizer, family, tmp_path / family)
  expected = [_framed(tokenizer, ids, FAMILIES[family]) for ids in tokenizer.encode(TEXTS)]
  wrong = _mismatches(expected, exported(TEXTS)["input_ids"])
  assert not wrong, f"{len(wrong)} of {len(TEXTS)} texts differ:\n" + "\n".join(wrong)
  if family == "t5" and tokenizer.extra_ids:
    assert [exported.convert_tokens_to_ids(f"<extra_id_{k}>") for k in range(3)] == [
        tokenizer.sentinel_id(k) for k in range(3)]
