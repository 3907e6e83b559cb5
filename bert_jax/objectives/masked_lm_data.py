"""BERT / ALBERT masking in tf graph ops, for a batch of sequences at once: which tokens each sequence
predicts, and how they are corrupted.

Candidates are the tokens that are not special (control pieces, [UNK], padding, sentinels). They group into
units: single tokens, or whole words with `whole_word` (a piece that begins a word plus the pieces that
continue it; which pieces begin words comes from the tokenizer's pieces, or per token from a word segmenter's
flags stored with the data: bert_jax/data/words.py). A sequence predicts round(mask_rate * its candidates)
tokens, at most max_predictions. Spans are chosen one at a time: a length n in 1..max_ngram with p(n)
proportional to 1/n (ALBERT's n-gram masking; n = 1 for BERT), then a random start among the places where n
free units follow each other with no special token between them (a shorter n when there is none; while a unit
with priority is free, the start is one of those: ERNIE's entities, objectives/masking_units.py); a span that would
overshoot the number to predict is shortened, and a single unit that does not fit is passed over. Each chosen token then
becomes [MASK] with probability mask_token_fraction, a random ordinary token with probability
random_token_fraction, and stays itself otherwise. Every draw is stateless, from one seed per batch.

ALBERT's generator (do_whole_word_mask, n <= 3: set whole_word and max_ngram=3) differs in small ways:
it counts [CLS] and [SEP] in the sequence length the budget is taken from, its n-grams may run across the
[SEP] between A and B, and it visits start words in a random order and skips a start whose n-gram meets
one already chosen, which makes its n-grams a little shorter than here (tests/test_objectives_original.py
holds both to p(n) ~ 1/n within the same tolerance).
"""

import dataclasses

import numpy as np

from bert_jax.data.tf_cpu import tf


@dataclasses.dataclass(frozen=True)
class Tables:
  special_V: tf.Tensor  # bool: never a candidate, never a replacement
  word_start_V: tf.Tensor  # bool: the piece begins a word
  replacements: tf.Tensor  # int32: the ids a random replacement is drawn from
  mask_id: int

  @classmethod
  def from_tokenizer(cls, tokenizer) -> "Tables":
    special = tokenizer.special_mask()
    return cls(tf.constant(special), tf.constant(tokenizer.word_starts()),
               tf.constant(np.flatnonzero(~special).astype(np.int32)), tokenizer.mask_id)


def _fold(seed: tf.Tensor, data: int | tf.Tensor) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(seed, tf.cast(data, tf.int64))


def _at(x_BL: tf.Tensor, index_BX: tf.Tensor) -> tf.Tensor:
  return tf.gather(x_BL, index_BX, batch_dims=1)


def choose_spans(input_ids_BL: tf.Tensor, seed: tf.Tensor, tables: Tables, mask_rate: float, max_predictions: int,
                 whole_word: bool, max_ngram: int, word_start_BL: tf.Tensor | None = None,
                 ngram_weights: tuple[float, ...] = (), priority_BL: tf.Tensor | None = None) -> tf.Tensor:
  """[B, L] int32: 0 for tokens left alone, k for the tokens of the k-th span chosen in that sequence. With
  whole_word, word_start_BL (bool, 1 where a token begins a word) replaces the tokenizer's word starts.
  ngram_weights (max_ngram of them), when given, replace p(n) ~ 1/n (UniLM: 0.8, 0.1, 0.1). priority_BL (bool,
  at unit starts) marks the units taken before any other."""
  seq_len = input_ids_BL.shape[1]
  batch = tf.shape(input_ids_BL)[0]
  position_BL = tf.broadcast_to(tf.range(seq_len), tf.shape(input_ids_BL))
  candidate = ~tf.gather(tables.special_V, input_ids_BL)
  starts = candidate
  if whole_word:
    previous = tf.pad(candidate[:, :-1], [[0, 0], [1, 0]])
    if word_start_BL is None:
      word_start_BL = tf.gather(tables.word_start_V, input_ids_BL)
    starts = candidate & (word_start_BL | ~previous)
  # Units are named by the position of their first token. unit_end: where the unit's tokens stop.
  breaks = tf.sort(tf.where(starts | ~candidate, position_BL, seq_len), axis=1)
  breaks = tf.pad(breaks, [[0, 0], [0, 1]], constant_values=seq_len)
  unit_end = _at(breaks, tf.searchsorted(breaks, position_BL, side="right"))
  starts_padded = tf.pad(starts, [[0, 0], [0, 1]])  # position seq_len: no unit
  next_unit = tf.where(_at(starts_padded, unit_end), unit_end, seq_len)  # the unit right after, if adjacent
  chain = [position_BL]  # chain[k][p]: the k-th unit after p, or seq_len
  for _ in range(max_ngram - 1):
    chain.append(_at(tf.pad(next_unit, [[0, 0], [0, 1]], constant_values=seq_len), chain[-1]))
  unit_end_padded = tf.pad(unit_end, [[0, 0], [0, 1]], constant_values=seq_len)
  candidates = tf.reduce_sum(tf.cast(candidate, tf.float32), axis=1)
  budget = tf.minimum(max_predictions, tf.maximum(1, tf.cast(tf.round(candidates * mask_rate), tf.int32)))
  budget = tf.where(candidates > 0, budget, 0)
  probs = np.asarray(ngram_weights, np.float64) if ngram_weights else 1.0 / np.arange(1, max_ngram + 1)
  thresholds = tf.constant(np.cumsum(probs / probs.sum())[:-1], tf.float32)
  lengths_n = tf.range(1, max_ngram + 1)
  # added to the draws of the starts (columns 1..L); column 0 draws the length
  first_1L = 0.0 if priority_BL is None else tf.pad(tf.cast(priority_BL, tf.float32), [[0, 0], [1, 0]])

  def body(step, remaining_B, free_BL1, span_BL, spans_B):
    active = (remaining_B > 0) & tf.reduce_any(free_BL1, axis=1)
    draws = tf.random.stateless_uniform([batch, seq_len + 1], _fold(seed, step)) + first_1L
    drawn_n = 1 + tf.reduce_sum(tf.cast(draws[:, :1] > thresholds, tf.int32), axis=1)
    valid = [free_BL1[:, :seq_len]]  # valid[n - 1][p]: units p and the n - 1 after it are free and adjacent
    for k in range(1, max_ngram):
      valid.append(valid[-1] & _at(free_BL1, chain[k]))
    valid_BNL = tf.stack(valid, axis=1)
    usable = tf.reduce_any(valid_BNL, axis=2) & (lengths_n[None] <= drawn_n[:, None])
    n = tf.reduce_max(tf.where(usable, lengths_n[None], 1), axis=1)
    starts_B = tf.argmax(tf.where(_at(valid_BNL, n[:, None] - 1)[:, 0], draws[:, 1:], -1.0), axis=1,
                         output_type=tf.int32)
    last_units = _at(tf.stack(chain, axis=2), starts_B[:, None])[:, 0]  # [B, N]
    span_tokens = _at(unit_end_padded, last_units) - starts_B[:, None]
    fits = (lengths_n[None] <= n[:, None]) & (span_tokens <= remaining_B[:, None]) & active[:, None]
    take = tf.reduce_max(tf.where(fits, lengths_n[None], 0), axis=1)
    tokens = tf.where(take > 0, _at(span_tokens, tf.maximum(take, 1)[:, None] - 1)[:, 0], 0)
    at_start = position_BL >= starts_B[:, None]
    taken = at_start & (position_BL < (starts_B + tokens)[:, None])
    passed_over = (active & (take == 0))[:, None] & (position_BL == starts_B[:, None])
    free_BL1 = free_BL1 & tf.pad(~(taken | passed_over), [[0, 0], [0, 1]], constant_values=True)
    span_BL = tf.where(taken, (spans_B + 1)[:, None], span_BL)
    return step + 1, remaining_B - tokens, free_BL1, span_BL, spans_B + tf.cast(take > 0, tf.int32)

  state = (0, budget, starts_padded, tf.zeros_like(input_ids_BL, tf.int32), tf.zeros([batch], tf.int32))
  _, _, _, span_BL, _ = tf.while_loop(
      lambda _, remaining, free, *__: tf.reduce_any((remaining > 0) & tf.reduce_any(free, axis=1)), body, state)
  return span_BL


def mask_tokens(input_ids_BL: tf.Tensor, seed: tf.Tensor, tables: Tables, mask_rate: float, max_predictions: int,
                whole_word: bool, max_ngram: int, mask_token_fraction: float,
                random_token_fraction: float, word_start_BL: tf.Tensor | None = None,
                ngram_weights: tuple[float, ...] = (), priority_BL: tf.Tensor | None = None) -> dict:
  """The corrupted input_ids, masked_positions / masked_ids / masked_weights [B, max_predictions] (sorted,
  zero-padded), and span_ids (choose_spans' answer)."""
  span_ids = choose_spans(input_ids_BL, seed, tables, mask_rate, max_predictions, whole_word, max_ngram,
                          word_start_BL, ngram_weights, priority_BL)
  masked = span_ids > 0
  shape = tf.shape(input_ids_BL)
  how = tf.random.stateless_uniform(shape, _fold(seed, -1))
  random_ids = tf.gather(tables.replacements, tf.random.stateless_uniform(
      shape, _fold(seed, -2), 0, tf.shape(tables.replacements)[0], tf.int32))
  corrupted = tf.where(masked & (how < mask_token_fraction + random_token_fraction), random_ids, input_ids_BL)
  corrupted = tf.where(masked & (how < mask_token_fraction), tables.mask_id, corrupted)
  seq_len = input_ids_BL.shape[1]
  position = tf.range(seq_len)[None]
  order = tf.argsort(tf.where(masked, position, seq_len + position), axis=1, stable=True)[:, :max_predictions]
  weights = _at(masked, order)
  positions = tf.where(weights, order, 0)
  return {"input_ids": corrupted,
          "masked_positions": positions,
          "masked_ids": tf.where(weights, _at(input_ids_BL, order), 0),
          "masked_weights": tf.cast(weights, tf.float32),
          "span_ids": span_ids}
