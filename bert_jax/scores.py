"""Downstream scores: GLUE's metrics as the benchmark reports them, and SQuAD's as the official evaluation
scripts (v1.1, v2.0) compute them. Plain numpy/scipy on host values; labels and predictions are 1-D sequences.

SQuAD: answers are compared after normalize_answer (lower case, no punctuation, no articles a/an/the, single
spaces); a question scores the best match over its gold answers. An unanswerable question (v2.0: no gold answer)
has the single gold answer "", which only the prediction "" matches, in exact match and in F1 alike.
"""

import collections
from collections.abc import Iterable, Mapping, Sequence
import re
import string
from typing import Protocol
import warnings

import numpy as np
from scipy import stats

from bert_jax.errors import UserError

# labels, predictions or scores: a sequence or a 1-D array (each metric reads it through np.asarray)
Values = Sequence | np.ndarray


def accuracy(labels: Values, predictions: Values) -> float:
  return float(np.mean(np.asarray(labels) == np.asarray(predictions)))


def f1(labels: Values, predictions: Values) -> float:
  """Binary F1 of the positive class 1; 0.0 when there is no positive label nor prediction (as sklearn)."""
  positive, predicted = np.asarray(labels) == 1, np.asarray(predictions) == 1
  true_pos = np.sum(positive & predicted)
  wrong = np.sum(positive != predicted)
  return float(2 * true_pos / (2 * true_pos + wrong)) if true_pos + wrong else 0.0


def matthews(labels: Values, predictions: Values) -> float:
  """Matthews correlation, multiclass (Gorodkin's R_K, as sklearn); 0.0 where it is undefined (one class only)."""
  classes, codes = np.unique(np.concatenate([np.asarray(labels), np.asarray(predictions)]), return_inverse=True)
  true, pred = codes[:len(labels)], codes[len(labels):]
  confusion = np.zeros((len(classes), len(classes)), np.float64)
  np.add.at(confusion, (true, pred), 1)
  true_sum, pred_sum, n = confusion.sum(1), confusion.sum(0), confusion.sum()
  cov_true_pred = np.trace(confusion) * n - true_sum @ pred_sum
  cov_pred, cov_true = n * n - pred_sum @ pred_sum, n * n - true_sum @ true_sum
  return float(cov_true_pred / np.sqrt(cov_true * cov_pred)) if cov_true * cov_pred else 0.0


def _correlation(statistic, labels: Values, scores: Values) -> float:
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", stats.ConstantInputWarning)  # a constant input gives nan: undefined
    return float(statistic(np.asarray(labels, np.float64), np.asarray(scores, np.float64))[0])


def pearson(labels: Values, scores: Values) -> float:
  return _correlation(stats.pearsonr, labels, scores)


def spearman(labels: Values, scores: Values) -> float:
  return _correlation(stats.spearmanr, labels, scores)


METRICS = {"accuracy": accuracy, "f1": f1, "matthews": matthews, "pearson": pearson, "spearman": spearman}
GLUE_METRICS = {"cola": ("matthews",), "sst2": ("accuracy",), "mrpc": ("f1", "accuracy"), "qqp": ("f1", "accuracy"),
                "stsb": ("pearson", "spearman"), "mnli": ("accuracy",), "qnli": ("accuracy",), "rte": ("accuracy",),
                "wnli": ("accuracy",), "ax": ("matthews",)}


def score(metric_names: Iterable[str], labels: Values, predictions: Values) -> dict[str, float]:
  unknown = [name for name in metric_names if name not in METRICS]
  if unknown:
    raise UserError(f"unknown metric '{unknown[0]}'; choose from {', '.join(METRICS)}")
  return {name: METRICS[name](labels, predictions) for name in metric_names}


# --- SQuAD -------------------------------------------------------------------------------------------------------

ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
  no_punctuation = "".join(ch for ch in s.lower() if ch not in PUNCTUATION)
  return " ".join(ARTICLES.sub(" ", no_punctuation).split())


def exact_match(prediction: str, gold_answers: Sequence[str]) -> float:
  return float(max(normalize_answer(prediction) == normalize_answer(gold) for gold in gold_answers))


def _f1_tokens(prediction: list[str], gold: list[str]) -> float:
  if not prediction or not gold:
    return float(prediction == gold)  # no-answer against no-answer: 1; against an answer: 0
  same = sum((collections.Counter(prediction) & collections.Counter(gold)).values())
  return 2 * same / (len(prediction) + len(gold))


def token_f1(prediction: str, gold_answers: Sequence[str]) -> float:
  tokens = normalize_answer(prediction).split()
  return max(_f1_tokens(tokens, normalize_answer(gold).split()) for gold in gold_answers)


class GoldQuestion(Protocol):
  """What squad_scores reads of a question (bert_jax.data.squad.Example, frozen): its id and gold (text, char
  start)s."""

  @property
  def qid(self) -> str: ...

  @property
  def answers(self) -> Sequence[tuple[str, int]]: ...


def gold_texts(question: GoldQuestion) -> list[str]:
  """The gold answers that say something after normalization, or [""] for an unanswerable question (v2.0)."""
  return [text for text, _ in question.answers if normalize_answer(text)] or [""]


def squad_scores(predictions: Mapping[str, str], questions: Iterable[GoldQuestion],
                 na_probs: Mapping[str, float] | None = None, na_prob_thresh: float = 1.0) -> dict[str, float]:
  """{"exact_match", "f1"} in percent over `questions`; with unanswerable questions (v2.0) also HasAns_/NoAns_
  exact, f1 and total. With na_probs (no-answer scores, e.g. best_answers' null_odds), as evaluate-v2.0.py
  --na-prob-file: a question whose na_prob > na_prob_thresh counts as answered "", and best_exact, best_f1 and
  their thresholds report the best such threshold for exact match and for F1."""
  questions = list(questions)
  missing = [q.qid for q in questions if q.qid not in predictions]
  if missing:
    raise UserError(f"no prediction for {len(missing)} of {len(questions)} questions (e.g. '{missing[0]}'); predict "
                    "every question, or score only the questions predicted")
  has_answer = {q.qid: bool(q.answers) for q in questions}
  exact_raw = {q.qid: exact_match(predictions[q.qid], gold_texts(q)) for q in questions}
  f1_raw = {q.qid: token_f1(predictions[q.qid], gold_texts(q)) for q in questions}
  exact, f1_ = exact_raw, f1_raw
  if na_probs is not None:
    exact, f1_ = (_no_answer_threshold(raw, na_probs, has_answer, na_prob_thresh) for raw in (exact_raw, f1_raw))
  result = _percent(exact, f1_, has_answer, "exact_match", "f1")
  if not all(has_answer.values()):
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
      qids = [qid for qid, has in has_answer.items() if has == wanted]
      if qids:
        result.update(_percent(exact, f1_, qids, f"{prefix}_exact", f"{prefix}_f1"))
        result[f"{prefix}_total"] = len(qids)
  if na_probs is not None:
    for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
      result[f"best_{name}"], result[f"best_{name}_thresh"] = _best_threshold(predictions, raw, na_probs, has_answer)
  return result


def _percent(exact: dict, f1_: dict, qids: Iterable[str], exact_name: str, f1_name: str) -> dict[str, float]:
  qids = list(qids)
  return {exact_name: 100.0 * sum(exact[q] for q in qids) / len(qids), f1_name: 100.0 * sum(f1_[q] for q in qids)
          / len(qids)}


def _no_answer_threshold(scores: dict, na_probs: Mapping[str, float], has_answer: dict, thresh: float) -> dict:
  return {qid: float(not has_answer[qid]) if na_probs[qid] > thresh else s for qid, s in scores.items()}


def _best_threshold(predictions: Mapping[str, str], scores: dict, na_probs: Mapping[str, float],
                    has_answer: dict) -> tuple[float, float]:
  """evaluate-v2.0.py's find_best_thresh: walk the questions by rising na_prob, answering one more each step
  (the rest answer ""), and keep the na_prob where the total score peaks (0.0 when answering none is best)."""
  current = best = sum(not has for has in has_answer.values())
  best_thresh = 0.0
  for qid in sorted(na_probs, key=lambda k: na_probs[k]):
    if qid not in scores:
      continue
    current += scores[qid] if has_answer[qid] else -1 if predictions[qid] else 0
    if current > best:
      best, best_thresh = current, na_probs[qid]
  return 100.0 * best / len(scores), float(best_thresh)
