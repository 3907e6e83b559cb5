"""TinyBERT's data augmentation (Jiao et al. 2020; the release's data_augmentation.py), `bert-jax augment`: a task's
training split grown by word replacement, so that task-specific distillation (objectives/tinybert_task.py) learns the
teacher on more of the input space than the labelled examples cover.

In each text, every word the release would replace (letters only, not an English stop word) gets candidates: for a
word of one piece, the masked LM's `candidates` most likely pieces there that begin a word of letters, the input
being the text with the word masked (segment A) and the text as written (segment B), as the release's; for a word of
several pieces, its nearest words by the cosine of word vectors (`word_vectors`, GloVe's text format, as the release),
or without them the masked LM's guesses for the whole word masked as one piece. A word without candidates keeps
itself. Then `copies` times: each such word is replaced by one of its candidates, drawn uniformly, with probability
`probability`; a text already written is not written again. Each example is written first as it is, then with each
of its texts replaced by its variants in turn (the other text as written), the label kept:

    rows = augment_task(predictor, task, Settings(copies=20), seed=0)   # dicts, as write() writes them (JSON lines)

`finetune --config.task.augmented=FILE` trains on them in place of the task's training split (data/tasks.py).
"""

from collections.abc import Iterable, Sequence
import dataclasses
import json
import random
import re

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from bert_jax import models
from bert_jax.data import tasks as tasks_lib
from bert_jax.data.tokenizer import is_cjk
from bert_jax.errors import UserError
from bert_jax.files import atomic, storage
from bert_jax.objectives import masked_lm

# The release's number of variants per text by GLUE task (its default_params); 30 for any other task.
RELEASE_COPIES = {"glue/cola": 30, "glue/mnli": 10, "glue/mrpc": 30, "glue/sst2": 20, "glue/stsb": 30, "glue/qqp": 10,
                  "glue/qnli": 20, "glue/rte": 30}
DEFAULT_COPIES = 30
WORD_VECTORS_READ = 100_000  # the release reads the first 100,000 words of the GloVe file
BATCH = 64

# NLTK's English stop words, the release's StopWordsList: never replaced.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him his himself
she she's her hers herself it it's its itself they them their theirs themselves this that that'll these those am is
are was were be been being have has had having do does did doing a an the and but if or because as until while of at
by for with about against between into through during before after above below to from up down in out on off over
under again further then once here there all any both each few more most other some such no nor not only own same so
than too very s t can will just don don't should should've now d ll m o re ve y ain aren aren't couldn couldn't didn
didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't
shan shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn wouldn't 's 're""".split())
TOKEN = re.compile(r"[^\W_]+")  # a run of letters and digits, as BERT's basic tokenizer splits text
WORD = re.compile(r"[^\W\d_]+")  # letters only


@dataclasses.dataclass(frozen=True)
class Settings:
  copies: int = DEFAULT_COPIES  # the release's N: variants drawn per text (duplicates dropped)
  candidates: int = 15  # the release's M: the masked LM's top pieces (or nearest words) considered per word
  probability: float = 0.4  # the release's p: the chance that a word with candidates is replaced in a variant

  def check(self) -> None:
    if self.copies < 1 or self.candidates < 1:
      raise UserError(f"--copies and --candidates must be at least 1, got {self.copies} and {self.candidates}")
    if not 0.0 < self.probability <= 1.0:
      raise UserError(f"--probability must be in (0, 1], got {self.probability}")


def replaceable(text: str) -> list[tuple[int, int]]:
  """The character spans of the words the release replaces: tokens of letters only (Chinese, Japanese and Korean
  text, which has no spaces between words, left alone), not stop words."""
  return [m.span() for m in TOKEN.finditer(text) if WORD.fullmatch(m.group()) and m.group().lower() not in STOP_WORDS
          and not any(is_cjk(c) for c in m.group())]


class WordVectors:
  """GloVe's text format (a word, then its vector, per line): the first WORD_VECTORS_READ words, unit length."""

  def __init__(self, path: str):
    file = storage.path(path)
    if not file.is_file():
      raise UserError(f"--word-vectors {file} does not exist; give GloVe's text file (glove.6B.300d.txt, ...)")
    words, vectors = [], []
    with storage.open_file(file, "r") as f:
      for line in f:
        items = line.rstrip().split(" ")
        if len(items) < 2:
          continue
        words.append(items[0])
        vectors.append(np.asarray(items[1:], np.float32))
        if len(words) == WORD_VECTORS_READ:
          break
    if not words or len({len(v) for v in vectors}) != 1:
      raise UserError(f"--word-vectors {file}: expected lines of a word and its numbers, all of one length")
    matrix = np.stack(vectors)
    self.matrix = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    self.index = {w: k for k, w in enumerate(words)}
    self.words = words

  def nearest(self, word: str, count: int) -> list[str]:
    """The `count` nearest words by cosine (the word itself excluded), title-cased as the word is; none for a word
    without a vector."""
    key = word if word in self.index else word.lower()
    if key not in self.index:
      return []
    similarity = self.matrix @ self.matrix[self.index[key]]
    similarity[self.index[key]] = -np.inf
    found = [self.words[k] for k in np.argsort(-similarity)[:count]]
    return [w.title() for w in found] if word.istitle() else found


class MaskedLM:
  """The top pieces a masked LM puts at one masked position, with the unmasked text as the second segment."""

  def __init__(self, predictor):
    config = predictor.config
    if not isinstance(predictor.objective, masked_lm.MaskedLM):
      raise UserError(f"--init {predictor.origin} is a {config.model.family} run of objective "
                      f"{config.objective.name}; the candidates are a masked LM's guesses: give a model pretrained "
                      "with masked_lm (BERT, RoBERTa, ALBERT, ERNIE) or distilled as DistilBERT or TinyBERT")
    self.predictor, self.tokenizer = predictor, predictor.tokenizer
    self.limit = models.max_sequence_length(config.model) or 512
    self.two_segments = config.model.get("type_vocab_size", 2) > 1
    self.word_starts = self.tokenizer.word_starts()
    self.model = predictor.trainer.eval_model
    self._top: dict[int, object] = {}

  def _top_ids(self, count: int):
    if count not in self._top:
      model = self.model

      def top(params, ids, types, mask, positions):
        logits = model.apply({"params": params}, ids, types, mask, positions)["mlm_logits"]
        return jax.lax.top_k(logits[:, 0].astype(jnp.float32), count)[1]

      self._top[count] = jax.jit(top)
    return self._top[count]

  def frame(self, text: str, span: tuple[int, int]) -> tuple[list[int], list[int], int] | None:
    """[CLS] text-with-[MASK] [SEP] text [SEP], its segments and the mask's position (None past the model's
    positions, where the release gives no candidates)."""
    tok = self.tokenizer
    before, after = text[:span[0]].rstrip(), text[span[1]:]
    left = tok.encode([before])[0] if before else []
    right = tok.encode([after.strip()])[0] if after.strip() else []
    masked = [*left, tok.mask_id, *right]
    original = tok.encode([text])[0]
    ids = [tok.cls_id, *masked, tok.sep_id, *original, tok.sep_id][:self.limit]
    position = 1 + len(left)
    if position >= self.limit:
      return None
    types = ([0] * (len(masked) + 2) + [1] * (len(original) + 1))[:len(ids)] if self.two_segments else [0] * len(ids)
    return ids, types, position

  def guesses(self, queries: Sequence[tuple[str, tuple[int, int]]], count: int) -> list[list[str]]:
    """For each (text, word span): the words of letters among the masked LM's `count` likeliest pieces there."""
    framed = [(k, f) for k, f in enumerate(self.frame(text, span) for text, span in queries) if f is not None]
    framed.sort(key=lambda item: len(item[1][0]))
    found: list[list[str]] = [[] for _ in queries]
    top = self._top_ids(count)
    with self.predictor.context(), tqdm(total=len(framed), desc="masked LM candidates", unit=" words",
                                        mininterval=5) as progress:
      for start in range(0, len(framed), BATCH):
        chunk = framed[start:start + BATCH]
        width = -(-max(len(f[0]) for _, f in chunk) // 32) * 32  # a few shapes to compile; the last chunk padded
        ids = np.full((BATCH, width), self.tokenizer.pad_id, np.int32)
        types, mask = np.zeros_like(ids), np.zeros_like(ids)
        positions = np.zeros((BATCH, 1), np.int32)
        for row, (_, (frame_ids, frame_types, position)) in enumerate(chunk):
          ids[row, :len(frame_ids)], types[row, :len(frame_ids)] = frame_ids, frame_types
          mask[row, :len(frame_ids)], positions[row, 0] = 1, position
        best = np.asarray(top(self.predictor.params, ids, types, mask, positions))
        for row, (k, _) in enumerate(chunk):
          found[k] = [w for w in (self._word(int(i)) for i in best[row]) if w]
        progress.update(len(chunk))
    return found

  def _word(self, piece_id: int) -> str:
    """The word a piece writes when it begins a word of letters (the release drops WordPiece's ## continuations),
    else ''."""
    if piece_id >= self.tokenizer.piece_count or not self.word_starts[piece_id]:
      return ""
    text = self.tokenizer.decode([piece_id]).strip()
    return text if WORD.fullmatch(text) else ""


def candidates(texts: Iterable[str], lm: MaskedLM, settings: Settings,
               vectors: WordVectors | None = None) -> dict[str, list[tuple[tuple[int, int], list[str]]]]:
  """Each distinct text -> its replaceable words' spans with their candidates (the word itself where none)."""
  spans = {text: replaceable(text) for text in dict.fromkeys(texts)}
  queries, neighbours = [], {}
  for text, found in spans.items():
    for span in found:
      word = text[span[0]:span[1]]
      if vectors is not None and len(lm.tokenizer.encode([word])[0]) > 1:
        neighbours[(text, span)] = vectors.nearest(word, settings.candidates)
      else:
        queries.append((text, span))
  guessed = dict(zip(queries, lm.guesses(queries, settings.candidates)))
  result = {}
  for text, found in spans.items():
    result[text] = [(span, guessed.get((text, span), neighbours.get((text, span))) or [text[span[0]:span[1]]])
                    for span in found]
  return result


def variants(text: str, words: list[tuple[tuple[int, int], list[str]]], settings: Settings,
             rng: random.Random) -> list[str]:
  """The text, then up to `copies` distinct variants of it (the release's augment loop)."""
  found = {text: None}
  for _ in range(settings.copies):
    pieces, end = [], 0
    for (start, stop), choices in words:
      choice = rng.choice(choices)
      pieces += [text[end:start], choice if rng.random() < settings.probability else text[start:stop]]
      end = stop
    found.setdefault("".join(pieces) + text[end:], None)
  return list(found)


def augment_task(predictor, task: tasks_lib.Task, settings: Settings, seed: int = 0,
                 vectors: WordVectors | None = None, limit: int | None = None) -> list[dict]:
  """The task's training split (its first `limit` examples) augmented: each example as it is, then with each of its
  texts varied in turn."""
  settings.check()
  if task.kind == "span":
    raise UserError("augment grows a classification or regression task's training split; SQuAD's answers are spans "
                    "of the text, which replacing words would move")
  examples = task.read("train")[:limit]
  lm = MaskedLM(predictor)
  words = candidates((text for e in examples for _, text in e.texts), lm, settings, vectors)
  rng = random.Random(seed)
  rows = []
  for example in examples:
    rows.append(row(task, example.guid, example.texts, example.label))
    for k, (field, text) in enumerate(example.texts):
      for number, variant in enumerate(variants(text, words[text], settings, rng)[1:], 1):
        texts = example.texts[:k] + ((field, variant),) + example.texts[k + 1:]
        rows.append(row(task, f"{example.guid}-{field}-{number}", texts, example.label))
  return rows


def row(task: tasks_lib.Task, guid: str, texts: tuple[tuple[str, str], ...], label) -> dict:
  return {"task": task.name, "guid": guid, "texts": dict(texts), "label": label}


def write(rows: list[dict], output: str) -> storage.Path:
  path = storage.path(output)
  path.parent.mkdir(parents=True, exist_ok=True)
  atomic.write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))
  return path
