"""Small ports of the original data generators' sampling, used as oracles by the statistical tests:
google-research/bert create_pretraining_data.py (segment pairs, NSP), google-research/albert's file of the
same name (SOP, whole-word n-gram masking). Only the decisions are ported, not the output format."""

import random

import numpy as np


def pair_labels(documents: list[list[int]], max_seq_length: int, short_seq_prob: float, task: str,
                rng: random.Random) -> list[bool]:
  """`is_random_next` of every instance create_instances_from_document makes from each document in turn
  (documents as lists of sentence lengths). nsp: BERT's rule; sop: ALBERT's (random_next_sentence=False)."""
  labels = []
  for document_index, document in enumerate(documents):
    max_num_tokens = max_seq_length - 3
    target = max_num_tokens
    if rng.random() < short_seq_prob:
      target = rng.randint(2, max_num_tokens)
    chunk, length, i = [], 0, 0
    while i < len(document):
      chunk.append(document[i])
      length += document[i]
      if i == len(document) - 1 or length >= target:
        a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
        if len(chunk) == 1 or (task == "nsp" and rng.random() < 0.5):
          random_next = True
          for _ in range(10):
            if rng.randint(0, len(documents) - 1) != document_index:
              break
          i -= len(chunk) - a_end  # the sentences after A go back for the next chunk
        else:
          random_next = task == "sop" and rng.random() < 0.5  # sop: A and B swapped
        labels.append(random_next)
        chunk, length = [], 0
      i += 1
  return labels


def ngram_lengths(tokens: list[int], special: np.ndarray, word_start: np.ndarray, masked_lm_prob: float,
                  max_predictions: int, max_ngram: int, rng: random.Random, np_rng: np.random.Generator
                  ) -> list[int]:
  """Words per masked n-gram chosen by ALBERT's create_masked_lm_predictions (do_whole_word_mask=True,
  favor_shorter_ngram=True) on one sequence of ids (no padding), in the order they are chosen."""
  cand_indexes = []
  for i, token in enumerate(tokens):
    if special[token]:
      continue
    if cand_indexes and not word_start[token]:
      cand_indexes[-1].append(i)
    else:
      cand_indexes.append([i])
  num_to_predict = min(max_predictions, max(1, int(round(len(tokens) * masked_lm_prob))))
  ngrams = np.arange(1, max_ngram + 1)
  pvals = 1.0 / ngrams
  pvals /= pvals.sum()
  ngram_indexes = [[cand_indexes[idx:idx + n] for n in ngrams] for idx in range(len(cand_indexes))]
  rng.shuffle(ngram_indexes)
  covered, chosen, lengths = set(), 0, []
  for cand_index_set in ngram_indexes:
    if chosen >= num_to_predict:
      break
    # len(cand_index_set) is always max_ngram: near the end of the sequence the slices just hold fewer words.
    n = int(np_rng.choice(ngrams, p=pvals))
    index_set = sum(cand_index_set[n - 1], [])
    n -= 1
    while chosen + len(index_set) > num_to_predict and n > 0:
      index_set = sum(cand_index_set[n - 1], [])
      n -= 1
    if chosen + len(index_set) > num_to_predict or covered & set(index_set):
      continue
    covered |= set(index_set)
    chosen += len(index_set)
    lengths.append(len(cand_index_set[n]))
  return lengths
