"""SQuAD v1.1 / v2.0 extractive question answering: the JSON files, model inputs cut into windows, and answers from
the start/end logits, as google-research/bert's run_squad.py does it, with character offsets of the tokenizer's own
tokens (encode_with_offsets) in place of its whitespace words: an answer is cut from the context exactly as the
tokens cover it.

A window is [CLS] question [SEP] part of the context [SEP], padded to max_seq_len: the question's first max_query_len
tokens (type 0), then as many context tokens as fit (type 1, with the last [SEP]). A long context gives several
windows, each starting doc_stride tokens after the one before. A token in several windows belongs to the one where it
has most context (the most tokens on its shorter side): only there may an answer start.
"""

import collections
import dataclasses
import json
from typing import Any

import numpy as np

from bert_jax.errors import UserError
from bert_jax.files import storage


@dataclasses.dataclass(frozen=True)
class Example:
  qid: str
  question: str
  context: str
  answers: tuple[tuple[str, int], ...]  # (text, start character in context); none when is_impossible
  is_impossible: bool = False


@dataclasses.dataclass
class Features:
  """N windows of len(examples) examples, L = max_seq_len."""
  input_ids: np.ndarray  # int32 [N, L]
  token_type_ids: np.ndarray  # int32 [N, L]
  attention_mask: np.ndarray  # int32 [N, L]
  start_positions: np.ndarray  # int32 [N]: the answer's first token; 0 ([CLS]) outside the window, impossible, or
  end_positions: np.ndarray  # int32 [N]: its last token           not is_training
  example_index: np.ndarray  # int32 [N]: the window's example in `examples`
  offsets: np.ndarray  # int32 [N, L, 2]: a context token's character span in its context; -1 for other tokens
  max_context: np.ndarray  # bool [N, L]: context tokens whose max-context window this is
  examples: list[Example]

  def __len__(self) -> int:
    return len(self.input_ids)

  def arrays(self) -> dict[str, np.ndarray]:
    """What a model and its loss read, by name."""
    return {name: getattr(self, name) for name in ("input_ids", "token_type_ids", "attention_mask", "start_positions",
                                                  "end_positions")}


def read_squad(path: str | storage.Path) -> list[Example]:
  """The questions of a SQuAD v1.1 or v2.0 JSON file, in file order."""
  path = storage.path(path)
  if not path.is_file():
    raise UserError(f"SQuAD file '{path}' does not exist; give a train-v1.1.json / dev-v2.0.json style file")
  try:
    articles = json.loads(path.read_text())["data"]
    return [_example(qa, paragraph["context"]) for article in articles for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]]
  except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
    raise UserError(f"{path} is not a SQuAD JSON file ({type(error).__name__}: {str(error)[:80]}); expected "
                    '{"data": [{"paragraphs": [{"context": ..., "qas": [{"id", "question", "answers"}]}]}]}') from None


def _example(qa: dict, context: str) -> Example:
  impossible = bool(qa.get("is_impossible", False))
  answers = () if impossible else tuple((str(a["text"]), int(a["answer_start"])) for a in qa["answers"])
  return Example(str(qa["id"]), str(qa["question"]), str(context), answers, impossible or not answers)


def _windows(tokens: int, room: int, stride: int) -> list[tuple[int, int]]:
  """(start, length) of each window over `tokens` context tokens, `room` tokens at most each."""
  windows, start = [], 0
  while True:
    length = min(tokens - start, room)
    windows.append((start, length))
    if start + length >= tokens:
      return windows
    start += min(length, stride)


def _best_windows(windows: list[tuple[int, int]], tokens: int) -> np.ndarray:
  """[tokens]: the window where each token has most context (run_squad.py's _check_is_max_context; the first of
  equals)."""
  start_W, length_W = np.array(windows).T[:, :, None]
  position_T = np.arange(tokens)[None]
  inside_WT = (position_T >= start_W) & (position_T < start_W + length_W)
  score_WT = np.minimum(position_T - start_W, start_W + length_W - 1 - position_T) + 0.01 * length_W
  return np.argmax(np.where(inside_WT, score_WT, -np.inf), axis=0)


def _answer_tokens(example: Example, spans: list[tuple[int, int]]) -> tuple[int, int] | None:
  """The first and last context token that overlap the (first) answer's characters; None for no answer."""
  if example.is_impossible:
    return None
  text, begin = example.answers[0]
  inside = [i for i, (start, end) in enumerate(spans) if start < begin + len(text) and end > begin]
  return (inside[0], inside[-1]) if inside else None


def features(examples: list[Example], tokenizer, max_seq_len: int = 384, doc_stride: int = 128,
             max_query_len: int = 64, is_training: bool = False) -> Features:
  """The windows of every example (a Tokenizer or HFTokenizer: bert_jax.data.tokenizer.load)."""
  if max_seq_len <= max_query_len + 3:
    raise UserError(f"max_seq_len {max_seq_len} leaves no room for the context after a question of up to "
                    f"{max_query_len} tokens, [CLS] and two [SEP]; raise it above {max_query_len + 3}")
  if doc_stride <= 0:
    raise UserError(f"doc_stride must be positive, got {doc_stride}")
  cls, sep, pad = tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id
  rows: dict[str, list[Any]] = collections.defaultdict(list)
  for index, (example, query) in enumerate(zip(examples, tokenizer.encode([e.question for e in examples]))):
    query = query[:max_query_len]
    ids, spans = tokenizer.encode_with_offsets(example.context)
    windows = _windows(len(ids), max_seq_len - len(query) - 3, doc_stride)
    best = _best_windows(windows, len(ids))
    answer = _answer_tokens(example, spans) if is_training else None
    first = len(query) + 2  # the first context token's position in a window
    for w, (start, length) in enumerate(windows):
      context = slice(start, start + length)
      rows["input_ids"].append([cls, *query, sep, *ids[context], sep])
      rows["token_type_ids"].append([0] * first + [1] * (length + 1))
      inside = answer is not None and start <= answer[0] and answer[1] < start + length
      rows["positions"].append((answer[0] - start + first, answer[1] - start + first)
                               if answer is not None and inside else (0, 0))
      rows["example_index"].append(index)
      rows["offsets"].append((first, spans[context]))
      rows["max_context"].append((first, best[context] == w))
  count = len(rows["input_ids"])
  input_ids = np.full((count, max_seq_len), pad, np.int32)
  token_type_ids = np.zeros((count, max_seq_len), np.int32)
  attention_mask = np.zeros((count, max_seq_len), np.int32)
  offsets = np.full((count, max_seq_len, 2), -1, np.int32)
  max_context = np.zeros((count, max_seq_len), bool)
  for n in range(count):
    tokens = len(rows["input_ids"][n])
    input_ids[n, :tokens], token_type_ids[n, :tokens] = rows["input_ids"][n], rows["token_type_ids"][n]
    attention_mask[n, :tokens] = 1
    first, spans = rows["offsets"][n]
    offsets[n, first:first + len(spans)] = np.reshape(spans, (-1, 2))
    first, is_best = rows["max_context"][n]
    max_context[n, first:first + len(is_best)] = is_best
  positions = np.array(rows["positions"], np.int32).reshape(-1, 2)
  return Features(input_ids, token_type_ids, attention_mask, positions[:, 0], positions[:, 1],
                  np.array(rows["example_index"], np.int32), offsets, max_context, list(examples))


def _top(logits_L: np.ndarray, n: int) -> np.ndarray:
  return np.argsort(-logits_L, kind="stable")[:n]  # ties: the earlier position first, as run_squad.py's sort


def best_answers(features: Features, start_logits: np.ndarray, end_logits: np.ndarray, n_best: int = 20,
                 max_answer_len: int = 30, null_threshold: float = 0.0, version_2: bool = False
                 ) -> tuple[dict[str, str], dict[str, float], dict[str, list[dict]]]:
  """(answer text, v2.0's null odds, the n best answers) of each question id, from start/end logits [N, L]: as
  run_squad.py's write_predictions. In each window the n_best highest start and end logits pair into spans that
  start on a max-context token, end on a context token, end after they start and are at most max_answer_len tokens;
  the best span (start + end logit) over all windows wins. v2.0: the null score is the lowest start[0] + end[0] of
  the windows; a question gets "" when null score - best span's score > null_threshold; null_odds holds that
  difference (inf without any span), for scores.squad_scores' na_probs. An n-best entry is {"text", "probability"
  (softmax over the entries), "start_logit", "end_logit"}; "" is the null answer (v2.0) or no valid span at all."""
  start_logits, end_logits = np.asarray(start_logits, np.float64), np.asarray(end_logits, np.float64)
  windows_of: dict[int, list[int]] = collections.defaultdict(list)
  for n, index in enumerate(features.example_index):
    windows_of[int(index)].append(n)
  answers: dict[str, str] = {}
  null_odds: dict[str, float] = {}
  nbest: dict[str, list[dict]] = {}
  for index, example in enumerate(features.examples):
    candidates = []  # (start logit, end logit, text)
    null = (np.inf, 0.0, 0.0)  # the lowest null score and its logits
    for n in windows_of[index]:
      start_L, end_L = start_logits[n], end_logits[n]
      null = min(null, (start_L[0] + end_L[0], start_L[0], end_L[0]), key=lambda entry: entry[0])
      starts, ends = _top(start_L, n_best), _top(end_L, n_best)
      valid = (features.max_context[n, starts][:, None] & (features.offsets[n, ends, 0] >= 0)[None]
               & (ends[None] >= starts[:, None]) & (ends[None] - starts[:, None] < max_answer_len))
      for s, e in zip(*np.nonzero(valid)):  # start-major, as the original's loops
        text = example.context[features.offsets[n, starts[s], 0]:features.offsets[n, ends[e], 1]]
        if text:  # not a span of whitespace pieces only
          candidates.append((start_L[starts[s]], end_L[ends[e]], text))
    if version_2:
      candidates.append((null[1], null[2], ""))
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for start_logit, end_logit, text in sorted(candidates, key=lambda c: c[0] + c[1], reverse=True):
      if len(entries) >= n_best:
        break
      if text not in seen:
        seen.add(text)
        entries.append({"text": text, "start_logit": float(start_logit), "end_logit": float(end_logit)})
    if version_2 and "" not in seen:
      entries.append({"text": "", "start_logit": float(null[1]), "end_logit": float(null[2])})
    if not entries:
      entries.append({"text": "", "start_logit": 0.0, "end_logit": 0.0})
    totals = np.array([e["start_logit"] + e["end_logit"] for e in entries])
    probabilities = np.exp(totals - totals.max()) / np.exp(totals - totals.max()).sum()
    nbest[example.qid] = [{"text": e["text"], "probability": float(p), "start_logit": e["start_logit"],
                           "end_logit": e["end_logit"]} for e, p in zip(entries, probabilities)]
    best = next((e for e in entries if e["text"]), None)
    answers[example.qid] = best["text"] if best else ""
    if version_2:
      null_odds[example.qid] = float(null[0] - best["start_logit"] - best["end_logit"]) if best else float("inf")
      if null_odds[example.qid] > null_threshold:
        answers[example.qid] = ""
  return answers, null_odds, nbest
