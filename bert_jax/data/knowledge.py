"""ERNIE 1.0's knowledge units (Sun et al. 2019) in Chinese text, from jieba's words and their part-of-speech tags
(jieba.posseg), found when the text is prepared with data.word_segmenter=jieba_pos and stored as one small integer
per token (data/words.py finds each start as it finds word starts; objectives/masking_units.py masks by them):

  bit 0  the token begins a word: jieba.posseg's words, punctuation a word of its own (as data.word_segmenter=jieba)
  bit 1  the token begins a phrase-level unit: the words, with each noun phrase one unit. A noun phrase is a maximal
         run of at least two words, each nominal (tag n*, vn, an or j) or a modifier (a, b, m or q), that ends in a
         nominal word (a run's modifiers after its last nominal word stay words of their own)
  bit 2  the token begins a named entity: a word tagged nr* (person), ns* (place), nt* (organization) or nz (another
         proper name), as jieba tags them, or an entry of the entity lexicon. jieba gives an entity as one word, so
         the entity level's units are the words, and masking takes the entities among them first

The entity lexicon (data.entity_lexicon) is a UTF-8 file of one entity a line, as jieba's user dictionaries are
written ("word [frequency] [tag]"; an entry without a tag is nz): jieba keeps each entry whole and tags it as given.
It is added to a segmenter of its own, so other uses of jieba in the process do not see it.
"""

import bisect
import functools
import hashlib

from bert_jax.data import words
from bert_jax.errors import UserError
from bert_jax.files import storage

NOMINAL = ("vn", "an", "j")  # with every tag that starts with n
MODIFIERS = ("a", "b", "m", "q")
ENTITY_PREFIXES = ("nr", "ns", "nt", "nz")
PUNCTUATION_TAG = "w"


def is_entity(tag: str) -> bool:
  return tag.startswith(ENTITY_PREFIXES)


def _is_nominal(tag: str) -> bool:
  return tag.startswith("n") or tag in NOMINAL


def tagged_words(text: str, lexicon: str = "") -> list[tuple[str, str]]:
  """(word, tag) for the words of `text` in order; punctuation cut out as words of their own, tagged "w", and the
  rest of a word they were cut from keeps no tag of a name or a phrase ("x")."""
  found = []
  for pair in _segmenter(lexicon).cut(text):
    word, tag = pair.word, pair.flag
    if not any(words.is_punctuation(char) for char in word):
      found.append((word, tag))
      continue
    run = ""
    for char in word:
      if words.is_punctuation(char):
        found += [(run, "x"), (char, PUNCTUATION_TAG)] if run else [(char, PUNCTUATION_TAG)]
        run = ""
      else:
        run += char
    if run:
      found.append((run, "x"))
  return found


def phrase_spans(tags: list[str]) -> list[tuple[int, int]]:
  """[begin, end) word indices of the noun phrases (see the module docstring) among words tagged `tags`."""
  spans, begin = [], 0
  while begin < len(tags):
    end = begin
    while end < len(tags) and (_is_nominal(tags[end]) or tags[end] in MODIFIERS):
      end += 1
    last = max((k for k in range(begin, end) if _is_nominal(tags[k])), default=begin - 1)
    if last - begin >= 1:
      spans.append((begin, last + 1))
    begin = max(end, begin + 1)
  return spans


def phrase_units(tagged: list[tuple[str, str]]) -> list[str]:
  """The text of `tagged` cut into words, each noun phrase one unit."""
  texts = [word for word, _ in tagged]
  cut, at = [], 0
  for begin, end in phrase_spans([tag for _, tag in tagged]):
    cut += texts[at:begin] + ["".join(texts[begin:end])]
    at = end
  return cut + texts[at:]


def unit_flags(text: str, offsets: list[tuple[int, int]], lexicon: str = "") -> list[int]:
  """Per token of `text` (offsets: its [begin, end) characters), the sum of 2^k over the bits k it has (see the module
  docstring). A token of whitespace only belongs with the word after it, as in words.unit_starts."""
  tagged = tagged_words(text, lexicon)
  word_starts = words.unit_starts(text, offsets, [word for word, _ in tagged])
  phrase_starts = words.unit_starts(text, offsets, phrase_units(tagged))
  in_entity = [is_entity(tag) for word, tag in tagged for _ in word]
  content = [i for i, char in enumerate(text) if not char.isspace()]
  flags = []
  for (begin, _), word, phrase in zip(offsets, word_starts, phrase_starts):
    first = bisect.bisect_left(content, begin)
    entity = word and first < len(content) and in_entity[content[first]]
    flags.append(word + 2 * phrase + 4 * entity)
  return flags


def lexicon_sha256(lexicon: str) -> str:
  """The SHA-256 of the lexicon file (what prepared data records of it)."""
  return hashlib.sha256(_lexicon_path(lexicon).read_bytes()).hexdigest()


def _lexicon_path(lexicon: str) -> storage.Path:
  path = storage.path(lexicon)
  if not path.is_file():
    raise UserError(f"data.entity_lexicon {lexicon} is not a file; give a UTF-8 file of one entity a line")
  return path


@functools.cache
def _segmenter(lexicon: str):
  """A jieba.posseg tokenizer of its own, with the lexicon's entries added."""
  words._jieba()  # installed, and quiet
  import jieba
  import jieba.posseg

  tokenizer = jieba.Tokenizer()
  if lexicon:
    for entry in _entries(lexicon):
      tokenizer.add_word(*entry)
  return jieba.posseg.POSTokenizer(tokenizer)


def _entries(lexicon: str) -> list[tuple[str, int | None, str]]:
  """(word, frequency or None, tag) of each line of the lexicon file."""
  entries = []
  for number, line in enumerate(_lexicon_path(lexicon).read_text(encoding="utf-8").splitlines(), 1):
    fields = line.split()
    if not fields:
      continue
    frequency = next((int(f) for f in fields[1:] if f.isdigit()), None)
    tags = [f for f in fields[1:] if not f.isdigit()]
    if len(fields) > 3 or len(tags) > 1:
      raise UserError(f"data.entity_lexicon {lexicon} line {number} is not 'word [frequency] [tag]': {line.strip()}")
    entries.append((fields[0], frequency, tags[0] if tags else "nz"))
  return entries
