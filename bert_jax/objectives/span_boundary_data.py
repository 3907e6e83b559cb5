"""SpanBERT's span masking in tf graph ops, for a batch of sequences at once (the sampling and where it differs
from the release are described in span_boundary.py)."""

import numpy as np

from bert_jax.data.tf_cpu import tf
from bert_jax.objectives.masked_lm_data import Tables


def span_length_probs(p: float, max_span: int) -> np.ndarray:
  """p(n) for n = 1..max_span: the geometric distribution clipped and renormalized, as the release does."""
  probs = p * (1 - p) ** np.arange(max_span)
  return probs / probs.sum()


def _seed(seed: tf.Tensor, data: int | tf.Tensor) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(seed, tf.cast(data, tf.int64))


def _gather(x_BL: tf.Tensor, index_BX: tf.Tensor) -> tf.Tensor:
  return tf.gather(x_BL, index_BX, batch_dims=1)


def choose_spans(input_ids_BL: tf.Tensor, seed: tf.Tensor, tables: Tables, mask_rate: float, max_predictions: int,
                 geometric_p: float, max_span: int) -> dict:
  """span_ids [B, L] int32: k on the tokens the k-th span masked first, 0 elsewhere; drawn and words
  [B, max_predictions] int32: each span's drawn length in words and the words it covered (masked before
  or not), 0 past the last span."""
  seq_len = input_ids_BL.shape[1]
  batch = tf.shape(input_ids_BL)[0]
  position_BL = tf.broadcast_to(tf.range(seq_len), tf.shape(input_ids_BL))
  candidate = ~tf.gather(tables.special_V, input_ids_BL)
  previous = tf.pad(candidate[:, :-1], [[0, 0], [1, 0]])
  starts = candidate & (tf.gather(tables.word_start_V, input_ids_BL) | ~previous)
  # Words are named by the position of their first token.
  breaks = tf.sort(tf.where(starts | ~candidate, position_BL, seq_len), axis=1)
  breaks = tf.pad(breaks, [[0, 0], [0, 1]], constant_values=seq_len)
  word_end = _gather(breaks, tf.searchsorted(breaks, position_BL, side="right"))  # where p's word stops
  starts_before = tf.sort(tf.where(starts, position_BL, -1), axis=1)
  word_of = tf.maximum(_gather(starts_before, tf.searchsorted(starts_before, position_BL, side="right") - 1), 0)
  starts_padded = tf.pad(starts, [[0, 0], [0, 1]])
  next_word = tf.pad(tf.where(_gather(starts_padded, word_end), word_end, seq_len), [[0, 0], [0, 1]],
                     constant_values=seq_len)
  chain = [position_BL]  # chain[k][p]: the k-th word after p's in the same stretch of text, or seq_len
  for _ in range(max_span - 1):
    chain.append(_gather(next_word, chain[-1]))
  chain_BLN = tf.stack(chain, axis=2)
  word_length = tf.pad(word_end - position_BL, [[0, 0], [0, 1]])  # at word starts; 0 at seq_len
  candidates = tf.reduce_sum(tf.cast(candidate, tf.float64), axis=1)
  budget = tf.cast(tf.math.ceil(candidates * mask_rate), tf.int32)  # float64 as the release's math.ceil
  budget = tf.minimum(budget, max_predictions)
  slack = max_predictions - budget  # a word the budget ends in is completed while it fits in max_predictions
  thresholds = tf.constant(np.cumsum(span_length_probs(geometric_p, max_span))[:-1], tf.float32)
  slots = tf.range(max_predictions)[None]

  def eligible(masked_BL1, remaining_B):
    """Anchors: unmasked candidates whose word fits in max_predictions."""
    fits = _gather(word_length, word_of) <= (remaining_B + slack)[:, None]
    return candidate & ~masked_BL1[:, :seq_len] & fits

  def body(step, remaining_B, masked_BL1, span_BL, count_B, drawn_BK, words_BK):
    anchors = eligible(masked_BL1, remaining_B)
    active = (remaining_B > 0) & tf.reduce_any(anchors, axis=1)
    draws = tf.random.stateless_uniform([batch, seq_len + 1], _seed(seed, step))
    drawn = 1 + tf.reduce_sum(tf.cast(draws[:, :1] > thresholds, tf.int32), axis=1)
    anchor = tf.argmax(tf.where(anchors, draws[:, 1:], -1.0), axis=1, output_type=tf.int32)
    words_BN = _gather(chain_BLN, _gather(word_of, anchor[:, None]))[:, 0]  # the span's words, seq_len past the end
    new_BN = tf.where(_gather(masked_BL1, words_BN), 0, _gather(word_length, words_BN))
    before_BN = tf.cumsum(new_BN, axis=1, exclusive=True)  # tokens the span masked before each of its words
    n = tf.range(max_span)[None]
    take_BN = ((n < drawn[:, None]) & (words_BN < seq_len) & (before_BN < remaining_B[:, None])
               & (before_BN + new_BN <= (remaining_B + slack)[:, None]))
    taken = tf.reduce_sum(tf.math.cumprod(tf.cast(take_BN, tf.int32), axis=1), axis=1)
    taken = tf.where(active, taken, 0)
    last_word = _gather(words_BN, tf.maximum(taken - 1, 0)[:, None])[:, 0]
    stop = tf.where(taken > 0, _gather(tf.pad(word_end, [[0, 0], [0, 1]]), last_word[:, None])[:, 0], 0)
    first = _gather(word_of, anchor[:, None])[:, 0]
    covered = (position_BL >= first[:, None]) & (position_BL < stop[:, None])
    new = covered & ~masked_BL1[:, :seq_len]
    tokens = tf.reduce_sum(tf.cast(new, tf.int32), axis=1)
    span_BL = tf.where(new, (count_B + 1)[:, None], span_BL)
    here = (slots == count_B[:, None]) & active[:, None]
    drawn_BK = tf.where(here, drawn[:, None], drawn_BK)
    words_BK = tf.where(here, taken[:, None], words_BK)
    masked_BL1 = masked_BL1 | tf.pad(new, [[0, 0], [0, 1]])
    return (step + 1, remaining_B - tokens, masked_BL1, span_BL, count_B + tf.cast(active, tf.int32), drawn_BK,
            words_BK)

  zeros_BK = tf.zeros([batch, max_predictions], tf.int32)
  state = (0, budget, tf.zeros([batch, seq_len + 1], tf.bool), tf.zeros_like(input_ids_BL, tf.int32),
           tf.zeros([batch], tf.int32), zeros_BK, zeros_BK)
  _, _, _, span_BL, _, drawn_BK, words_BK = tf.while_loop(
      lambda step, remaining, masked, *_: tf.reduce_any(
          (remaining > 0) & tf.reduce_any(eligible(masked, remaining), 1)),
      body, state)
  return {"span_ids": span_BL, "drawn": drawn_BK, "words": words_BK}


def mask_spans(input_ids_BL: tf.Tensor, attention_mask_BL: tf.Tensor, seed: tf.Tensor, tables: Tables,
               mask_rate: float, max_predictions: int, geometric_p: float, max_span: int, sbo_max_targets: int,
               mask_token_fraction: float, random_token_fraction: float) -> dict:
  """The corrupted input_ids; masked_positions / masked_ids / masked_weights and the SBO's sbo_left / sbo_right /
  sbo_relative / sbo_weights [B, max_predictions] (in position order, zero-padded); choose_spans' answers."""
  chosen = choose_spans(input_ids_BL, seed, tables, mask_rate, max_predictions, geometric_p, max_span)
  masked = chosen["span_ids"] > 0
  seq_len = input_ids_BL.shape[1]
  shape = tf.shape(input_ids_BL)
  position_BL = tf.broadcast_to(tf.range(seq_len), shape)
  # Merged spans: the maximal runs of masked tokens, numbered from 1.
  previous = tf.pad(masked[:, :-1], [[0, 0], [1, 0]])
  following = tf.pad(masked[:, 1:], [[0, 0], [0, 1]])
  run = tf.cumsum(tf.cast(masked & ~previous, tf.int32), axis=1) * tf.cast(masked, tf.int32)
  run_starts = tf.sort(tf.where(masked & ~previous, position_BL, seq_len), axis=1)
  run_ends = tf.sort(tf.where(masked & ~following, position_BL, seq_len), axis=1)
  index = tf.maximum(run - 1, 0)
  left, right = _gather(run_starts, index) - 1, _gather(run_ends, index) + 1
  relative = position_BL - left - 1
  text_end = tf.reduce_sum(attention_mask_BL, axis=1, keepdims=True) - 2  # the last token before [SEP]
  sbo = masked & (left >= 1) & (right <= text_end) & (relative < sbo_max_targets)
  # One decision per merged span, a random token per position.
  how = _gather(tf.random.stateless_uniform([shape[0], seq_len + 1], _seed(seed, -1)), run)
  random_ids = tf.gather(tables.replacements, tf.random.stateless_uniform(
      shape, _seed(seed, -2), 0, tf.shape(tables.replacements)[0], tf.int32))
  corrupted = tf.where(masked & (how < mask_token_fraction + random_token_fraction), random_ids, input_ids_BL)
  corrupted = tf.where(masked & (how < mask_token_fraction), tables.mask_id, corrupted)
  order = tf.argsort(tf.where(masked, position_BL, seq_len + position_BL), axis=1, stable=True)[:, :max_predictions]
  weights = _gather(masked, order)
  at = lambda x_BL: tf.where(weights, _gather(x_BL, order), 0)
  return {"input_ids": corrupted, "masked_positions": at(position_BL), "masked_ids": at(input_ids_BL),
          "masked_weights": tf.cast(weights, tf.float32), "sbo_left": at(left), "sbo_right": at(right),
          "sbo_relative": at(relative), "sbo_weights": tf.cast(at(tf.cast(sbo, tf.int32)), tf.float32), **chosen}
