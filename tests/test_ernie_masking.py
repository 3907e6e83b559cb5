"""ERNIE 1.0's knowledge masking on Chinese text: jieba's words, noun phrases and named entities found when the text
is prepared (data.word_segmenter=jieba_pos), masked whole by objective.masking_unit, and switched in stages
(objective.stages). Entities are measured against jieba's own tags (jieba.posseg: nr, ns, nt, nz) on the 40 sentences
of tests/ernie_helpers.py, one character a token."""

import logging

from data_helpers import originals, take, tiny_config
from ernie_helpers import DOCUMENT_SENTENCES, SENTENCES
import numpy as np
import pytest

from bert_jax.data import knowledge, pipeline, prepare, tokenizer as tokenizer_lib
from bert_jax.data.sources import Source
from bert_jax.errors import UserError
from bert_jax.objectives import get_objective

TEXT = "".join(SENTENCES)


def jieba_words(sentence: str) -> list[tuple[int, int, bool]]:
  """[begin, end) of each of jieba.posseg's words of `sentence`, punctuation characters cut out as words of their own,
  and whether jieba tags it a named entity (nr*, ns*, nt*, nz)."""
  import jieba
  import jieba.posseg

  jieba.setLogLevel(logging.WARNING)
  spans, at = [], 0
  for pair in jieba.posseg.lcut(sentence):
    run = at
    for k, char in enumerate(pair.word):
      if not (char.isalnum() or char.isspace()):
        spans += [(run, at + k, False)] if run < at + k else []
        spans.append((at + k, at + k + 1, False))
        run = at + k + 1
    if run < at + len(pair.word):
      spans.append((run, at + len(pair.word), pair.flag.startswith(("nr", "ns", "nt", "nz")) and run == at))
    at += len(pair.word)
  assert at == len(sentence)
  return spans


def corpus_units(level: str = "word") -> list[tuple[int, int, bool]]:
  """jieba_words of every sentence (with level phrase: the noun phrases of data/knowledge.py and the other words),
  placed in TEXT."""
  units, at = [], 0
  for sentence in SENTENCES:
    if level == "phrase":
      cut = knowledge.phrase_units(knowledge.tagged_words(sentence))
      ends = np.cumsum([len(unit) for unit in cut])
      units += [(at + e - len(unit), at + e, False) for unit, e in zip(cut, ends)]
    else:
      units += [(at + b, at + e, entity) for b, e, entity in jieba_words(sentence)]
    at += len(sentence)
  return units


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """(workdir, tokenizer, overrides) with the corpus prepared by jieba_pos, one character a token."""
  directory = tmp_path_factory.mktemp("ernie_zh")
  corpus = directory / "zh.txt"
  corpus.write_text("\n\n".join("\n".join(SENTENCES[i:i + DOCUMENT_SENTENCES])
                                 for i in range(0, len(SENTENCES), DOCUMENT_SENTENCES)) + "\n")
  tokenizer = tokenizer_lib.train(SENTENCES, directory / "zh.model", 2000, model_type="character",
                                  character_coverage=1.0)
  overrides = (f"data.source={corpus}", f"data.tokenizer={directory / 'zh.model'}",
               f"model.vocab_size={tokenizer.vocab_size}", "data.shards=2", "data.eval_tokens=100",
               "objective.sentence_task=none", "objective.short_seq_prob=0")
  pipeline.prepare_if_needed(tiny_config("ernie_tiny", *overrides), directory / "w")
  return directory / "w", tokenizer, overrides


def masked_batches(prepared, batches: int, *overrides: str) -> dict:
  """Masked-LM batches of 32 from the training documents, in the order they were masked (no example shuffle); no
  stages unless `overrides` set them."""
  workdir, tokenizer, prepared_overrides = prepared
  config = tiny_config("ernie_tiny", *prepared_overrides, "objective.stages=()", *overrides)
  stream = pipeline.documents(config, workdir, "train", shuffle=True)
  return take(get_objective(config).dataset(stream, tokenizer, 0, True).batch(32), batches)


def unit_statistics(batch: dict, tokenizer, unit: str) -> dict:
  """What was masked, against jieba's words and entities (with unit phrase: the phrase-level units): the masked
  units (each masked token with unit piece, each masked word or phrase otherwise), the share of them that are
  entities, the entities and the units masked in part (none may be, but for pieces), the masked tokens and the
  tokens the budget asked for (15% of a sequence's, at most objective.max_predictions=10)."""
  spans = corpus_units(unit)
  ids = originals(batch)
  units, entity_units, partial_entities, partial_units, masked_tokens, budget = 0, 0, 0, 0, 0, 0
  for row in range(len(ids)):
    length = batch["attention_mask"][row].sum()
    chars = "".join(tokenizer.processor.id_to_piece(int(i)) for i in ids[row, 1:length - 1])
    at = TEXT.find(chars)
    assert at >= 0, chars
    chosen = np.zeros(len(chars), bool)
    chosen[batch["masked_positions"][row][batch["masked_weights"][row] > 0] - 1] = True
    masked_tokens += chosen.sum()
    budget += min(10, max(1, round(0.15 * len(chars))))
    for begin, end, entity in spans:
      begin, end, whole = max(begin - at, 0), min(end - at, len(chars)), at <= begin and end <= at + len(chars)
      if begin >= end:
        continue
      some, every = chosen[begin:end].any(), chosen[begin:end].all()
      partial_units += some and not every
      partial_entities += entity and whole and some and not every
      if unit == "piece":
        units += chosen[begin:end].sum()
        entity_units += entity and whole and end - begin == 1 and every
      elif every:
        units += 1
        entity_units += entity and whole
  return {"masked_units": int(units), "entity_share": entity_units / units, "partial_entities": int(partial_entities),
          "partial_units": int(partial_units), "masked_tokens": int(masked_tokens), "budget": int(budget),
          "rows": len(ids)}


def test_stored_flags_are_jiebas_words_phrases_and_entities(prepared):
  """bit 0 at each of jieba's words, bit 2 exactly at the first character of the words jieba tags as entities, bit 1
  at the start of each noun phrase and of each word outside one."""
  workdir, tokenizer, overrides = prepared
  config = tiny_config("ernie_tiny", *overrides)
  seen = 0
  for split in ("eval", "train"):
    for document in pipeline.documents(config, workdir, split).as_numpy_iterator():
      ends = np.cumsum(document["sentence_lengths"])
      for start, end in zip(ends - document["sentence_lengths"], ends):
        sentence = "".join(tokenizer.processor.id_to_piece(int(i)) for i in document["token_ids"][start:end])
        flags = document["word_starts"][start:end]
        words = jieba_words(sentence)
        expected_words, expected_entities = np.zeros(len(sentence), int), np.zeros(len(sentence), int)
        for begin, _, entity in words:
          expected_words[begin] = 1
          expected_entities[begin] = entity
        np.testing.assert_array_equal(flags & 1, expected_words, err_msg=sentence)
        np.testing.assert_array_equal(flags >> 2 & 1, expected_entities, err_msg=sentence)
        tags = [tag for _, tag in knowledge.tagged_words(sentence)]
        phrase_words = {k for b, e in knowledge.phrase_spans(tags) for k in range(b + 1, e)}
        expected_phrases = [int(k not in phrase_words) for k in range(len(words))]
        np.testing.assert_array_equal(flags[[b for b, _, _ in words]] >> 1 & 1, expected_phrases, err_msg=sentence)
        assert not (flags >> 1 & 1 & ~expected_words).any()  # a phrase-level unit begins at a word
        seen += 1
  assert seen == len(SENTENCES)


def test_a_stream_carries_the_same_flags(prepared, tmp_path):
  """data.stream=true tokenizes while training: its held-out documents carry the flags prepare stored, lexicon
  included."""
  from bert_jax.data import stream

  workdir, tokenizer, overrides = prepared
  lexicon = tmp_path / "entities.txt"
  lexicon.write_text("王小明昨天 nr\n")
  config = tiny_config("ernie_tiny", *overrides)
  streamed_config = tiny_config("ernie_tiny", *overrides, "data.stream=true", f"data.entity_lexicon={lexicon}")
  prepared_documents = list(pipeline.documents(config, workdir, "eval").as_numpy_iterator())
  streamed = list(stream.eval_documents(streamed_config, Source(streamed_config.data), tokenizer, 0,
                                        1).as_numpy_iterator())
  assert len(streamed) == len(prepared_documents) == 2  # the 100 tokens held out end in the second document
  prepared_documents[0]["word_starts"] = prepared_documents[0]["word_starts"].copy()
  prepared_documents[0]["word_starts"][1:5] = 0  # 王小明昨天 is one entity now: 王小明 and 昨天 were two words
  for ours, theirs in zip(streamed, prepared_documents):
    for name in ("token_ids", "sentence_lengths", "word_starts"):
      np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def test_noun_phrases_from_tags():
  assert knowledge.phrase_spans(["a", "n", "n", "v", "m", "q", "n", "a", "uj", "n"]) == [(0, 3), (4, 7)]
  assert knowledge.phrase_spans(["n", "a", "v", "vn", "j", "r"]) == [(3, 5)]  # a phrase ends in a nominal word
  assert knowledge.phrase_spans(["a", "a", "n"]) == [(0, 3)] and knowledge.phrase_spans(["n", "v", "n"]) == []


def test_entity_masking_masks_whole_entities_first(prepared):
  """masking_unit=entity masks no entity in part and takes entities first: most masked units are jieba's entities,
  against a few with whole words and almost none with single characters (an entity of one character)."""
  stats = {unit: unit_statistics(masked_batches(prepared, 4, f"objective.masking_unit={unit}"), prepared[1], unit)
           for unit in ("entity", "word")}
  stats["piece"] = unit_statistics(masked_batches(prepared, 4, "objective.stages=((1000, 'piece'), (1, 'entity'))"),
                                   prepared[1], "piece")
  print({unit: {k: round(v, 3) for k, v in s.items()} for unit, s in stats.items()})
  entity, word, piece = stats["entity"], stats["word"], stats["piece"]
  assert entity["partial_entities"] == entity["partial_units"] == word["partial_units"] == 0
  assert piece["partial_entities"] > 20  # characters of an entity masked without the rest
  # entities fill a sequence's 15% where it has enough of them; words the rest (measured: 0.64, 0.11, 0.00)
  assert entity["entity_share"] > 0.5 and word["entity_share"] < 0.2 and piece["entity_share"] < 0.02
  for s in stats.values():  # each keeps BERT's budget (a whole word may fall short of it)
    assert 0.9 * s["budget"] <= s["masked_tokens"] <= s["budget"]


def test_phrase_masking_masks_whole_phrases(prepared):
  """masking_unit=phrase masks each noun phrase and each other word whole, and masks phrases."""
  stats = unit_statistics(masked_batches(prepared, 2, "objective.masking_unit=phrase"), prepared[1], "phrase")
  assert stats["partial_units"] == 0 and stats["masked_tokens"] >= 0.9 * stats["budget"]
  assert stats["masked_tokens"] > 1.5 * stats["masked_units"]  # units of several characters: phrases and words


def test_stages_switch_the_unit_at_their_step(prepared):
  """Stages ((2, piece), (2, entity)) with 32 sequences a step: the first 64 sequences (steps 0 and 1) are masked by
  characters, the next 64 (steps 2 and 3) by entities."""
  batch = masked_batches(prepared, 4, "objective.stages=((2, 'piece'), (2, 'entity'))",
                         "objective.masking_unit=entity")
  first = unit_statistics({k: v[:64] for k, v in batch.items()}, prepared[1], "piece")
  second = unit_statistics({k: v[64:] for k, v in batch.items()}, prepared[1], "entity")
  assert first["partial_entities"] > 5 and first["entity_share"] < 0.02
  assert second["partial_units"] == 0 and second["entity_share"] > 0.5


def test_the_entity_lexicon_keeps_its_entries_whole(tmp_path):
  """An entry jieba would cut (自然语言处理: 自然语言 + 处理) becomes one entity; a tagged one keeps its tag."""
  sentence = SENTENCES[36]
  offsets = [(k, k + 1) for k in range(len(sentence))]
  assert not knowledge.unit_flags(sentence, offsets)[0] & 4
  lexicon = tmp_path / "entities.txt"
  lexicon.write_text("自然语言处理\n刘备纪念馆 nt\n")
  flags = knowledge.unit_flags(sentence, offsets, str(lexicon))
  assert [f & 5 for f in flags[:7]] == [5, 0, 0, 0, 0, 0, 1]  # one entity of six characters, then a word
  assert ("刘备纪念馆", "nt") in knowledge.tagged_words(SENTENCES[25], str(lexicon))
  assert ("刘备纪念馆", "nt") not in knowledge.tagged_words(SENTENCES[25])  # the lexicon stays in its segmenter


def test_the_lexicon_is_part_of_the_prepared_settings(prepared, tmp_path):
  lexicon = tmp_path / "entities.txt"
  lexicon.write_text("王小明 nr\n")

  def settings(*overrides):
    config = tiny_config("ernie_tiny", *prepared[2], *overrides)
    return prepare.settings(config, Source(config.data), prepared[1])

  without, with_lexicon = settings(), settings(f"data.entity_lexicon={lexicon}")
  assert without["entity_lexicon_sha256"] == "" and len(with_lexicon["entity_lexicon_sha256"]) == 64
  with pytest.raises(UserError, match="^data.entity_lexicon names entities for data.word_segmenter=jieba_pos, not "):
    settings(f"data.entity_lexicon={lexicon}", "data.word_segmenter=jieba")


@pytest.mark.parametrize("overrides,message", [
    (["objective.masking_unit=entity", "objective.stages=()", "data.word_segmenter=jieba"],
     "objective masking by entity needs the knowledge units prepared with the data; set "
     "--config.data.word_segmenter=jieba_pos"),
    (["objective.masking_unit=piece", "objective.stages=()"],
     "data.word_segmenter=jieba_pos finds ERNIE's knowledge units; set --config.objective.masking_unit"),
    (["objective.masking_unit=chunk"], "objective.masking_unit must be piece, word, phrase or entity, got 'chunk'"),
    (["objective.stages=((0, 'piece'),)"], "objective.stages must be pairs (steps > 0, unit in piece, word, phrase"),
    (["objective.whole_word=true"], "objective.whole_word=true masks words, as objective.masking_unit=word does"),
])
def test_bad_unit_settings_are_one_line(overrides, message):
  with pytest.raises(UserError) as error:
    get_objective(tiny_config("ernie_tiny", *overrides))
  assert message in str(error.value) and "\n" not in str(error.value)
