"""SQuAD: token offsets of both tokenizer kinds, the JSON files, windows over a long context (stride, max context,
answer labels) on hand-made examples, answers from logits, and a round trip over many examples: the labels map back
through the offsets to the gold answer text, and logits that point at the labels give the gold answers back."""

import itertools
import json
import re

import ml_collections
import numpy as np
import pytest
import tokenizers
from tokenizers import models, normalizers, pre_tokenizers

from bert_jax import scores
from bert_jax.data import squad, tokenizer as tokenizer_lib
from bert_jax.data.hf_tokenizer import HFTokenizer
from bert_jax.data.sources import Source
from bert_jax.errors import UserError

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
NON_ASCII = "Café  naïve, Zürich — 中文 (1895–1943) 😀 done."


def wordpiece(words: list[str], text: str) -> HFTokenizer:
  """BERT's uncased pipeline over `words` plus every character of `text` (alone and as ##piece)."""
  chars = sorted({c for c in normalizers.BertNormalizer(lowercase=True).normalize_str(text) if not c.isspace()})
  vocab = {piece: i for i, piece in enumerate(dict.fromkeys(SPECIALS + words + chars + ["##" + c for c in chars]))}
  built = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
  built.normalizer = normalizers.BertNormalizer(lowercase=True)
  built.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  built.add_special_tokens(SPECIALS)
  return HFTokenizer(built)


@pytest.fixture(scope="module")
def demo_sentences() -> list[str]:
  demo = ml_collections.ConfigDict({"source": "demo", "text_format": "sentences", "jsonl_field": "text"})
  return list(Source(demo).sentences())


@pytest.fixture(scope="module")
def sentencepiece(tmp_path_factory, demo_sentences) -> tokenizer_lib.Tokenizer:
  return tokenizer_lib.train(demo_sentences, tmp_path_factory.mktemp("tok") / "demo.model", 800, byte_fallback=True)


@pytest.fixture(scope="module", params=["sentencepiece", "wordpiece"])
def tokenizer(request, demo_sentences):
  if request.param == "sentencepiece":
    return request.getfixturevalue("sentencepiece")
  words = re.findall(r"[a-z]+", " ".join(demo_sentences).lower())
  common = [w for w, _ in sorted(((w, words.count(w)) for w in set(words[:20000])), key=lambda x: -x[1])[:300]]
  return wordpiece(common, " ".join(demo_sentences) + NON_ASCII)


@pytest.mark.parametrize("text", ["The assert statement is a convenient way", NON_ASCII, "  lead and trail  "])
def test_offsets_cover_the_text(tokenizer, text):
  ids, spans = tokenizer.encode_with_offsets(text)
  assert ids == tokenizer.encode([text])[0] and len(spans) == len(ids)
  starts, ends = np.array(spans).T
  assert (np.diff(starts) >= 0).all() and (np.diff(ends) >= 0).all() and (starts <= ends).all()
  assert all(not text[s].isspace() and not text[e - 1].isspace() for s, e in spans if e > s)
  # Pieces of one character (byte fallback) share its span or have none; the distinct spans tile the text.
  distinct = [span for span in dict.fromkeys(spans) if span[1] > span[0]]
  assert all(a[1] <= b[0] for a, b in itertools.pairwise(distinct))
  assert "".join(text[s:e] for s, e in distinct).replace(" ", "") == "".join(text.split())


def test_read_squad_v1_and_v2(tmp_path):
  context = "Paris is the capital of France."
  data = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
      {"id": "q1", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 0},
                                                        {"text": "Paris", "answer_start": 0}]},
      {"id": "q2", "question": "Moon?", "answers": [], "is_impossible": True,
       "plausible_answers": [{"text": "France", "answer_start": 24}]}]}]}]}
  (tmp_path / "squad.json").write_text(json.dumps(data))
  examples = squad.read_squad(tmp_path / "squad.json")
  assert examples == [squad.Example("q1", "Capital?", context, (("Paris", 0), ("Paris", 0)), False),
                      squad.Example("q2", "Moon?", context, (), True)]
  (tmp_path / "bad.json").write_text('{"data": [{"title": "no paragraphs"}]}')
  (tmp_path / "text.json").write_text("not json")
  for name in ("bad.json", "text.json"):
    with pytest.raises(UserError, match="is not a SQuAD JSON file"):
      squad.read_squad(tmp_path / name)
  with pytest.raises(UserError, match="does not exist"):
    squad.read_squad(tmp_path / "missing.json")


# --- hand-made windows: 30 one-token words t0..t29, a 3-token question, 10 context tokens a window, stride 4 -------

@pytest.fixture(scope="module")
def words_tokenizer() -> HFTokenizer:
  return wordpiece(["where", "is"] + [f"t{i}" for i in range(30)], "")


CONTEXT = " ".join(f"t{i}" for i in range(30))


def answer(first: int, last: int) -> tuple[str, int]:
  return " ".join(f"t{i}" for i in range(first, last + 1)), CONTEXT.index(f"t{first} ")


def hand_features(tokenizer, *examples: squad.Example, training: bool = True) -> squad.Features:
  return squad.features(list(examples), tokenizer, max_seq_len=16, doc_stride=4, max_query_len=8,
                         is_training=training)


def test_windows_stride_and_max_context(words_tokenizer):
  f = hand_features(words_tokenizer, squad.Example("a", "where is t7", CONTEXT, (answer(9, 10),)))
  assert len(f) == 6 and f.example_index.tolist() == [0] * 6  # windows start at tokens 0, 4, 8, 12, 16, 20
  first_tokens = [CONTEXT[f.offsets[n, 5, 0]:f.offsets[n, 5, 1]] for n in range(6)]
  assert first_tokens == ["t0", "t4", "t8", "t12", "t16", "t20"]
  cls, sep = words_tokenizer.cls_id, words_tokenizer.sep_id
  question = words_tokenizer.encode(["where is t7"])[0]
  assert f.input_ids[0].tolist() == [cls, *question, sep, *words_tokenizer.encode(["t0 t1 t2 t3 t4 t5 t6 t7 t8 t9"])[0],
                                     sep]
  assert f.token_type_ids[0].tolist() == [0] * 5 + [1] * 11 and f.attention_mask.all()
  last = f.input_ids[5]  # t20..t29: the last window is full
  assert last[15] == sep and (f.offsets[:, :5] == -1).all() and (f.offsets[:, 15] == -1).all()
  # t9 (window 1: 5 left, 4 right) and t10 (6, 3) belong to window 1; t11 (window 2: 3 left, 6 right) to window 2.
  owner = owners(f, CONTEXT)
  assert owner["t9"] == owner["t10"] == [1] and owner["t11"] == [2] and owner["t5"] == [0] and owner["t29"] == [5]
  # The answer t9 t10 lies in windows 1 and 2 (not 0: t10 is past its end), at context position + 5.
  assert f.start_positions.tolist() == [0, 9 - 4 + 5, 9 - 8 + 5, 0, 0, 0]
  assert f.end_positions.tolist() == [0, 10 - 4 + 5, 10 - 8 + 5, 0, 0, 0]


def owners(f: squad.Features, context: str) -> dict[str, list[int]]:
  """word -> the windows where it has most context; each word of `context` has exactly one."""
  token = [{context[s:e]: position for position, (s, e) in enumerate(f.offsets[n]) if s >= 0} for n in range(len(f))]
  owner = {word: [n for n in range(len(f)) if word in token[n] and f.max_context[n, token[n][word]]]
           for word in context.split()}
  assert all(len(windows) == 1 for windows in owner.values())
  return owner


def test_equal_context_goes_to_the_longer_window_and_a_long_stride_skips_nothing(words_tokenizer):
  short = " ".join(f"t{i}" for i in range(12))
  f = squad.features([squad.Example("a", "where is t7", short, ())], words_tokenizer, max_seq_len=16, doc_stride=3,
                       max_query_len=8)
  assert [CONTEXT[s:e] for s, e in f.offsets[:, 5]] == ["t0", "t3"]  # t0..t9 and t3..t11
  assert owners(f, short)["t6"] == [0]  # 3 tokens on its shorter side in both; window 0 holds 10 tokens, 1 holds 9
  f = squad.features([squad.Example("a", "where is t7", CONTEXT, ())], words_tokenizer, max_seq_len=16, doc_stride=25,
                       max_query_len=8)
  assert [CONTEXT[s:e] for s, e in f.offsets[:, 5]] == ["t0", "t10", "t20"]  # a stride past the window: the next
  assert owners(f, CONTEXT)["t10"] == [1]  # window starts after it


def test_answer_across_a_window_end_and_impossible_question(words_tokenizer):
  f = hand_features(words_tokenizer, squad.Example("a", "where is t7", CONTEXT, (answer(12, 14),)),
                    squad.Example("b", "where is t7", CONTEXT, (), True))
  # t12..t14: window 1 (t4..t13) cuts it, windows 2 (t8..t17) and 3 (t12..t21) hold it, window 4 starts at t16.
  assert f.start_positions[:6].tolist() == [0, 0, 12 - 8 + 5, 12 - 12 + 5, 0, 0]
  assert f.end_positions[:6].tolist() == [0, 0, 14 - 8 + 5, 14 - 12 + 5, 0, 0]
  assert f.example_index.tolist() == [0] * 6 + [1] * 6
  assert not f.start_positions[6:].any() and not f.end_positions[6:].any()
  unlabelled = hand_features(words_tokenizer, squad.Example("a", "where is t7", CONTEXT, (answer(12, 14),)),
                             training=False)
  assert not unlabelled.start_positions.any() and (unlabelled.input_ids == f.input_ids[:6]).all()
  with pytest.raises(UserError, match="leaves no room"):
    squad.features([], words_tokenizer, max_seq_len=10, max_query_len=8)


def position(f: squad.Features, window: int, word: str) -> int:
  return next(p for p, (s, e) in enumerate(f.offsets[window]) if s >= 0 and CONTEXT[s:e] == word)


def test_best_answer_starts_only_where_the_token_has_most_context(words_tokenizer):
  f = hand_features(words_tokenizer, squad.Example("a", "where is t7", CONTEXT, (answer(9, 10),)))
  start, end = np.zeros((6, 16)), np.zeros((6, 16))
  start[2, position(f, 2, "t9")], end[2, position(f, 2, "t12")] = 9, 9  # t9 starts nothing in window 2
  start[1, position(f, 1, "t9")], end[1, position(f, 1, "t10")] = 5, 5
  answers, null_odds, nbest = squad.best_answers(f, start, end)
  assert answers == {"a": "t9 t10"} and null_odds == {}
  entries = nbest["a"]
  assert (entries[0]["text"], entries[0]["start_logit"], entries[0]["end_logit"]) == ("t9 t10", 5.0, 5.0)
  score = {e["text"]: e["start_logit"] + e["end_logit"] for e in entries}
  assert score["t9 t10 t11 t12"] == 5.0 and len(entries) == 20  # from window 1 (5 + 0), not window 2 (9 + 9)
  assert sum(e["probability"] for e in entries) == pytest.approx(1.0)
  totals = [e["start_logit"] + e["end_logit"] for e in entries]
  assert totals == sorted(totals, reverse=True) and len({e["text"] for e in entries}) == 20


def test_best_answer_respects_max_answer_len_and_null_score(words_tokenizer):
  f = hand_features(words_tokenizer, squad.Example("a", "where is t7", CONTEXT, (answer(5, 9),)))
  start, end = np.zeros((6, 16)), np.zeros((6, 16))
  start[0, position(f, 0, "t5")], end[0, position(f, 0, "t9")], end[0, position(f, 0, "t6")] = 10, 10, 5
  assert squad.best_answers(f, start, end, max_answer_len=5)[0] == {"a": "t5 t6 t7 t8 t9"}
  assert squad.best_answers(f, start, end, max_answer_len=4)[0] == {"a": "t5 t6"}
  # v2.0: the null score is the lowest [CLS] start + end over the windows: 2 * 6 here (one window at 2 * 12).
  start[:, 0], end[:, 0] = 6, 6
  start[3, 0] = end[3, 0] = 12
  answers, null_odds, nbest = squad.best_answers(f, start, end, version_2=True)
  assert answers == {"a": "t5 t6 t7 t8 t9"} and null_odds == {"a": pytest.approx(12 - 20)}
  assert [e["text"] for e in nbest["a"][:2]] == ["t5 t6 t7 t8 t9", "t5 t6"] and "" in [e["text"] for e in nbest["a"]]
  start[:, 0], end[:, 0] = 11, 11
  answers, null_odds, nbest = squad.best_answers(f, start, end, version_2=True)
  assert answers == {"a": ""} and null_odds == {"a": pytest.approx(22 - 20)}
  assert [e["text"] for e in nbest["a"][:2]] == ["", "t5 t6 t7 t8 t9"]
  assert squad.best_answers(f, start, end, version_2=True, null_threshold=2.5)[0] == {"a": "t5 t6 t7 t8 t9"}
  assert squad.best_answers(f, start, end)[0] == {"a": "t5 t6 t7 t8 t9"}  # v1.1 never answers ""


def test_pieces_of_whitespace_alone_are_no_answer(sentencepiece):
  example = squad.Example("a", "what", NON_ASCII, ())
  f = squad.features([example], sentencepiece, max_seq_len=64, max_query_len=8)
  empty = [p for p, (s, e) in enumerate(f.offsets[0]) if s == e >= 0]  # a lone "\u2581" before byte pieces
  assert empty and f.max_context[0, empty[0]]
  start, end = np.zeros((1, 64)), np.zeros((1, 64))
  start[0, empty[0]] = end[0, empty[0]] = 10
  texts = [e["text"] for e in squad.best_answers(f, start, end)[2]["a"]]
  assert "" not in texts and len(texts) == 20
  nbest = squad.best_answers(f, start, end, version_2=True)[2]["a"]
  assert [e["start_logit"] for e in nbest if e["text"] == ""] == [0.0]  # the null answer, with [CLS]'s logits


# --- round trip over the demo corpus: paragraphs of several windows, whole-word answers ----------------------------

def demo_examples(sentences: list[str], count: int = 40) -> list[squad.Example]:
  rng = np.random.default_rng(0)
  examples = []
  for i in range(count):
    context = " ".join(sentences[20 * i:20 * i + 6]) + (" " + NON_ASCII if i % 5 == 0 else "")
    words = [m.span() for m in re.finditer(r"\S+", context)]
    first = int(rng.integers(len(words) - 4))
    begin, end = words[first][0], words[first + int(rng.integers(4))][1]
    impossible = i % 7 == 3
    answers = () if impossible else ((context[begin:end], begin),)
    examples.append(squad.Example(f"q{i}", sentences[20 * i + 10], context, answers, impossible))
  return examples


def test_round_trip_labels_and_answers(tokenizer, demo_sentences):
  examples = demo_examples(demo_sentences)
  f = squad.features(examples, tokenizer, max_seq_len=64, doc_stride=24, max_query_len=16, is_training=True)
  assert len(f) > 2 * len(examples)  # most contexts need several windows
  assert {name: a.shape for name, a in f.arrays().items()} == {
      "input_ids": (len(f), 64), "token_type_ids": (len(f), 64), "attention_mask": (len(f), 64),
      "start_positions": (len(f),), "end_positions": (len(f),)}
  labelled = set()
  for n in np.flatnonzero(f.start_positions):
    example = examples[f.example_index[n]]
    s, e = f.offsets[n, f.start_positions[n], 0], f.offsets[n, f.end_positions[n], 1]
    assert scores.normalize_answer(example.context[s:e]) == scores.normalize_answer(example.answers[0][0])
    assert example.context[s:e] == example.answers[0][0]  # whole-word answers: the tokens cover them exactly
    labelled.add(example.qid)
  assert labelled == {e.qid for e in examples if not e.is_impossible}
  for index, example in enumerate(examples):  # every context token belongs to exactly one window
    rows = f.example_index == index
    owned = [tuple(span) for span in f.offsets[rows][f.max_context[rows]]]
    assert owned == tokenizer.encode_with_offsets(example.context)[1]
  # Logits pointing at the labels give back the gold answers.
  start, end = np.zeros(f.input_ids.shape), np.zeros(f.input_ids.shape)
  rows = np.arange(len(f))
  start[rows, f.start_positions], end[rows, f.end_positions] = 10, 10
  answers, _, _ = squad.best_answers(f, start, end, max_answer_len=64)
  # Answers start only where their first token has most context: those whose window there holds them whole.
  whole = {examples[f.example_index[n]].qid for n in np.flatnonzero(f.start_positions)
           if f.max_context[n, f.start_positions[n]]}
  expected = {e.qid: e.answers[0][0] for e in examples if e.qid in whole}
  assert {qid: answers[qid] for qid in expected} == expected and len(expected) >= 0.8 * len(labelled)
  assert scores.squad_scores(answers, [e for e in examples if e.qid in whole]) == {"exact_match": 100.0, "f1": 100.0}
