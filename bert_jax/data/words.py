"""Word boundaries from a word segmenter, stored with the tokens, for whole-word masking of text written without
spaces (Chinese BERT-wwm: Cui et al. 2019, github.com/ymcui/Chinese-BERT-wwm).

data.word_segmenter:
  pieces  nothing is stored; whole-word masking finds words from the pieces (a piece that begins after whitespace,
          or a CJK piece: tokenizer.word_starts), so a Chinese word of several characters is several words
  jieba   prepare segments each sentence with jieba (the original used LTP) and stores word_starts, one flag per
          token (1: the token begins a word), next to token_ids. Punctuation is always a word of its own, even
          where jieba joins it to something. A token continues a word when it begins inside a word an earlier
          token of the sentence began: a piece that spans two words joins them into one unit, so no word is ever
          split between units; a piece of whitespace only (a lone "\u2581") begins the word after it.
  jieba_pos  ERNIE's knowledge units from jieba's part-of-speech tags (bert_jax/data/knowledge.py): word_starts holds
          a unit start per level as bits (1 word, 2 phrase, 4 entity), each found as a word start above; the entity
          lexicon data.entity_lexicon, when set, rides in the segmenter's spec ("jieba_pos:PATH", see `spec`).
"""

import bisect
from collections.abc import Callable
import logging
import os
import unicodedata

from bert_jax.errors import UserError

SEGMENTERS = ("pieces", "jieba", "jieba_pos")


def check(name: str) -> None:
  if name not in SEGMENTERS:
    raise UserError(f"data.word_segmenter must be one of {', '.join(SEGMENTERS)}, got '{name}'")


def is_punctuation(char: str) -> bool:
  """BERT's definition: ASCII symbols that are not letters, digits or spaces, and Unicode's P* categories
  (full-width ，。（）“”、 included)."""
  cp = ord(char)
  if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
    return True
  return unicodedata.category(char).startswith("P")


def segment(text: str) -> list[str]:
  """jieba's words of `text` with every punctuation character cut out as a word of its own."""
  words = []
  for word in _jieba().lcut(text):
    run = ""
    for char in word:
      if is_punctuation(char):
        words.extend([run, char] if run else [char])
        run = ""
      else:
        run += char
    if run:
      words.append(run)
  return words


def word_starts(text: str, offsets: list[tuple[int, int]]) -> list[int]:
  """One flag per token of `text` (offsets: each token's [begin, end) characters in it): 1 where it begins a
  word of segment(text), 0 where it continues one (see the module docstring)."""
  return unit_starts(text, offsets, segment(text))


def unit_starts(text: str, offsets: list[tuple[int, int]], units: list[str]) -> list[int]:
  """word_starts for any cut of `text` into units (strings that make up the text, in order)."""
  word_of = [index for index, word in enumerate(units) for _ in word]
  content = [i for i, char in enumerate(text) if not char.isspace()]
  starts, claimed = [], -1
  for begin, end in offsets:
    inside = [i for i in range(begin, end) if not text[i].isspace()]
    if inside:
      first, last = word_of[inside[0]], word_of[inside[-1]]
    else:  # whitespace or nothing: the token belongs with the word that follows
      following = bisect.bisect_left(content, end)
      first = last = word_of[content[following]] if following < len(content) else claimed + 1
    starts.append(int(first > claimed))
    claimed = max(claimed, last)
  return starts


def spec(data_config) -> str:
  """The segmenter as prepare and the stream pass it on: data.word_segmenter, with jieba_pos the entity lexicon
  after a colon when one is set."""
  name = data_config.get("word_segmenter", "pieces")
  lexicon = data_config.get("entity_lexicon", "")
  if lexicon and name != "jieba_pos":
    raise UserError(f"data.entity_lexicon names entities for data.word_segmenter=jieba_pos, not {name}; set "
                    "--config.data.word_segmenter=jieba_pos or --config.data.entity_lexicon=''")
  return f"{name}:{lexicon}" if lexicon else name


def encode(tokenizer, texts: list[str], flags: Callable[[str, list[tuple[int, int]]], list[int]] = word_starts
           ) -> tuple[list[list[int]], list[list[int]]]:
  """(token ids, word_starts) of each text, for a SentencePiece tokenizer (data/tokenizer.py) or a Hugging Face
  one (data/hf_tokenizer.py); `flags` finds a text's flags from its tokens' offsets (jieba_pos: data/knowledge.py)."""
  if hasattr(tokenizer, "processor"):
    try:
      encoded = tokenizer.processor.encode(texts, return_type="offset_mapping", num_threads=os.cpu_count() or 1)
    except (TypeError, ValueError):
      raise UserError("data.word_segmenter=jieba needs the tokens' character offsets, which this sentencepiece "
                      "cannot give; pip install 'sentencepiece>=0.2.1'") from None
    pairs = [(e["ids"], e["offsets"]) for e in encoded]
  else:
    pairs = [(e.ids, e.offsets) for e in tokenizer.tokenizer.encode_batch(texts, add_special_tokens=False)]
  return [ids for ids, _ in pairs], [flags(text, offsets) for text, (_, offsets) in zip(texts, pairs)]


def _jieba():
  try:
    import jieba
  except ImportError:
    raise UserError("data.word_segmenter=jieba needs the jieba package; pip install jieba") from None
  jieba.setLogLevel(logging.WARNING)
  return jieba
