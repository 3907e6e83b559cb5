"""Downstream scores: GLUE's metrics against sklearn and numpy on random data and against hand-computed small cases;
SQuAD's normalization, exact match, F1 and v2.0's no-answer scores and best threshold on hand cases."""

import numpy as np
import pytest
from sklearn import metrics as sk

from bert_jax import scores
from bert_jax.data.squad import Example
from bert_jax.errors import UserError


@pytest.mark.parametrize("classes", [2, 3])
def test_classification_metrics_match_sklearn(classes):
  rng = np.random.default_rng(classes)
  for _ in range(20):
    labels, predictions = rng.integers(0, classes, 50), rng.integers(0, classes, 50)
    assert scores.accuracy(labels, predictions) == pytest.approx(sk.accuracy_score(labels, predictions))
    assert scores.matthews(labels, predictions) == pytest.approx(sk.matthews_corrcoef(labels, predictions))
    if classes == 2:
      assert scores.f1(labels, predictions) == pytest.approx(sk.f1_score(labels, predictions))


def test_classification_metrics_by_hand():
  labels, predictions = [1, 1, 1, 0, 0], [1, 1, 0, 0, 1]  # tp 2, fn 1, fp 1, tn 1
  assert scores.accuracy(labels, predictions) == pytest.approx(3 / 5)
  assert scores.f1(labels, predictions) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
  assert scores.matthews(labels, predictions) == pytest.approx((2 * 1 - 1 * 1) / np.sqrt(3 * 3 * 2 * 2))
  # Undefined: one class only in the predictions (Matthews) or no positive anywhere (F1): 0.0, as sklearn.
  assert scores.matthews([0, 1, 1], [1, 1, 1]) == 0.0 == sk.matthews_corrcoef([0, 1, 1], [1, 1, 1])
  assert scores.f1([0, 0], [0, 0]) == 0.0
  assert scores.matthews(np.array(["a", "b", "a"]), np.array(["a", "b", "b"])) == pytest.approx(0.5)


def test_correlations():
  rng = np.random.default_rng(0)
  labels = rng.uniform(0, 5, 40)
  predictions = labels + rng.normal(0, 1, 40)
  assert scores.pearson(labels, predictions) == pytest.approx(np.corrcoef(labels, predictions)[0, 1])
  # Spearman by hand: 1 - 6 sum d^2 / (n (n^2 - 1)) with ranks 1 2 3 4 against 1 3 2 4.
  assert scores.spearman([0.1, 0.2, 0.3, 0.4], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(1 - 6 * 2 / (4 * 15))
  assert scores.spearman([1, 2, 3], [10, 100, 1000]) == pytest.approx(1.0)  # ranks only
  assert np.isnan(scores.pearson([1, 1, 1], [1, 2, 3]))  # undefined for a constant input


def test_glue_metrics_and_score():
  assert set(scores.GLUE_METRICS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli", "ax"}
  assert scores.GLUE_METRICS["cola"] == scores.GLUE_METRICS["ax"] == ("matthews",)
  assert scores.GLUE_METRICS["stsb"] == ("pearson", "spearman")
  result = scores.score(scores.GLUE_METRICS["mrpc"], [1, 1, 1, 0, 0], [1, 1, 0, 0, 1])
  assert result == {"f1": pytest.approx(2 / 3), "accuracy": pytest.approx(0.6)}
  with pytest.raises(UserError, match="unknown metric 'bleu'"):
    scores.score(["accuracy", "bleu"], [1], [1])


def test_normalize_answer():
  assert scores.normalize_answer("The  Quick, brown-fox!") == "quick brownfox"
  assert scores.normalize_answer("An apple a day") == "apple day"
  assert scores.normalize_answer("Theatre\tthen\nanother") == "theatre then another"  # whole words only
  assert scores.normalize_answer(" the. ") == ""


def test_exact_match_and_f1():
  assert scores.exact_match("the Eiffel Tower.", ["eiffel tower", "Paris"]) == 1.0
  assert scores.exact_match("Eiffel", ["eiffel tower", "Paris"]) == 0.0
  # Token F1: "red apple" against "big red apple": precision 2/2, recall 2/3 -> 0.8; the best gold answer counts.
  assert scores.token_f1("a red apple", ["big red apple"]) == pytest.approx(0.8)
  assert scores.token_f1("a red apple", ["big red apple", "red apple pie", "apple"]) == pytest.approx(0.8)
  assert scores.token_f1("red red", ["red"]) == pytest.approx(2 * 0.5 * 1 / 1.5)  # counts, not sets
  assert scores.token_f1("blue", ["big red apple"]) == 0.0
  # v2.0: an unanswerable question's gold is [""]: only "" (or what normalizes to it) matches.
  assert scores.exact_match("", [""]) == scores.token_f1("", [""]) == 1.0
  assert scores.exact_match("the", [""]) == scores.token_f1("the", [""]) == 1.0
  assert scores.exact_match("apple", [""]) == scores.token_f1("apple", [""]) == 0.0
  assert scores.token_f1("", ["apple"]) == 0.0


def question(qid: str, *answers: str) -> Example:
  return Example(qid, "?", " ".join(answers), tuple((a, 0) for a in answers), not answers)


def test_squad_scores_v1():
  questions = [question("a", "Eiffel Tower", "the tower"), question("b", "big red apple"), question("c", "1889")]
  result = scores.squad_scores({"a": "tower", "b": "red apple", "c": "1889"}, questions)
  # a: EM 1 ("the tower"), F1 1; b: EM 0, F1 0.8; c: EM 1, F1 1.
  assert result == {"exact_match": pytest.approx(200 / 3), "f1": pytest.approx(280 / 3)}
  with pytest.raises(UserError, match="no prediction for 1 of 3 questions"):
    scores.squad_scores({"a": "tower", "b": "red apple"}, questions)


def test_squad_scores_v2_with_no_answer_probabilities():
  questions = [question("q1", "Paris"), question("q2", "big red apple"), question("q3"), question("q4")]
  predictions = {"q1": "Paris", "q2": "red apple", "q3": "something", "q4": ""}
  result = scores.squad_scores(predictions, questions)
  assert result == {"exact_match": 50.0, "f1": pytest.approx(70.0), "HasAns_exact": 50.0,
                    "HasAns_f1": pytest.approx(90.0), "HasAns_total": 2, "NoAns_exact": 50.0, "NoAns_f1": 50.0,
                    "NoAns_total": 2}
  na_probs = {"q1": 0.1, "q2": 0.2, "q3": 0.3, "q4": 0.9}
  # Threshold 0.25: q3 and q4 count as answered "" (right, both unanswerable); q1, q2 keep their predictions.
  thresholded = scores.squad_scores(predictions, questions, na_probs, na_prob_thresh=0.25)
  assert thresholded["exact_match"] == 75.0 and thresholded["f1"] == pytest.approx(95.0)
  # Best thresholds, walking by rising na_prob from "all answer ''" (2 of 4 right): EM +1 (q1) = 3 at 0.1, then
  # +0 (q2), -1 (q3 answers wrongly), 0; F1 +1 = 3 at 0.1, +0.8 = 3.8 at 0.2, then -1, 0.
  assert (thresholded["best_exact"], thresholded["best_exact_thresh"]) == (75.0, 0.1)
  assert (thresholded["best_f1"], thresholded["best_f1_thresh"]) == (pytest.approx(95.0), 0.2)
  untouched = scores.squad_scores(predictions, questions, na_probs)  # the script's default threshold 1.0
  assert untouched["exact_match"] == 50.0 and untouched["best_exact"] == 75.0
  all_wrong = scores.squad_scores({"q1": "", "q2": "", "q3": "x", "q4": "y"}, questions, {k: 0.5 for k in na_probs})
  assert (all_wrong["best_exact"], all_wrong["best_exact_thresh"]) == (50.0, 0.0)  # answering none is best
  # A question at the threshold itself keeps its prediction (na_prob > threshold counts as "").
  assert scores.squad_scores(predictions, questions, na_probs, na_prob_thresh=0.3)["exact_match"] == 50.0
  # Answering "" to an unanswerable question on the way costs nothing: the peak at q1 (3 of 4) is still found.
  abstaining = scores.squad_scores({"q1": "Paris", "q2": "", "q3": "", "q4": ""}, questions,
                                   {"q3": 0.1, "q1": 0.2, "q2": 0.5, "q4": 0.6})
  assert (abstaining["best_exact"], abstaining["best_exact_thresh"]) == (75.0, 0.2)
