"""XLNet's examples in tf graph ops: two segments, span targets and a factorization order.

The documents (each followed by <eod> where the vocabulary has it, as XLNet's does, else </s>) form one token
stream cut into chunks of seq_len - 3 tokens. A chunk becomes [reuse part] A [SEP] B [SEP] [CLS] with type ids 0 on the
reuse part, A and its [SEP], 1 on B and its [SEP], 2 on [CLS]; A ends at a random point, and with probability
random_b_prob B is the same stretch of another chunk (from a shuffle of the stream) instead of A's continuation. With
bi_data each chunk also yields its reversed tokens as a second example (`reversed` = 1).

Targets: spans of n <= max_ngram tokens (p(n) proportional to 1/n), each in a context of
n * mask_alpha // mask_beta tokens at a random offset, until num_predict tokens; random single tokens make
up the rest. Special tokens are never targets. With a reuse part, it gets num_predict - num_predict // 2
targets and the rest of the example num_predict // 2 (the release's num_predict_0 and num_predict_1).

The factorization order, per part (the reuse part, then the rest): one random permutation of perm_size
offsets, applied within every block of perm_size tokens. As in the release's `_local_perm`, the context (the
tokens that are neither targets nor [SEP]/[CLS]) comes first, visible to all and seeing only context; the
targets and the [SEP]s and [CLS] follow in that order: [SEP] and [CLS] are never predicted, yet only what comes
after them sees them, and they see what comes before them and themselves. Nothing in the reuse part sees the
rest. It is encoded as `perm_rank`: the context of part p has rank p * (seq_len + 1), a target's or a
[SEP]'s/[CLS]'s rank is that plus 1 + its place in the block order; i may see j in the query stream iff
perm_rank[j] < perm_rank[i] + (1 - is_target[i]) (permutation_lm.permutation_mask).

All draws are stateless, from (seed, the chunk's position in the stream).
"""

import dataclasses

import numpy as np

from bert_jax.data.tf_cpu import tf

PARTNER_SHUFFLE = 1024  # chunks a random segment B is drawn from


@dataclasses.dataclass(frozen=True)
class Settings:
  seq_len: int
  reuse_len: int
  num_predict: int
  perm_size: int
  max_ngram: int
  mask_alpha: int
  mask_beta: int
  random_b_prob: float
  bi_data: bool
  sep_id: int
  cls_id: int
  eod_id: int

  @property
  def chunk_len(self) -> int:
    return self.seq_len - 3


def _fold(seed: tf.Tensor, data: int) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(seed, tf.constant(data, tf.int64))


def span_targets(candidate_N: tf.Tensor, goal: int, seed: tf.Tensor, s: Settings) -> tf.Tensor:
  """[N] bool: min(goal, candidates) targets among the candidates, mostly in spans."""
  n = candidate_N.shape[0]
  spans = min(goal, n // (s.mask_alpha // s.mask_beta) + 1)
  log_p = np.log(1.0 / np.arange(1, s.max_ngram + 1))[None].astype(np.float32)
  ngram_S = 1 + tf.cast(tf.random.stateless_categorical(log_p, spans, _fold(seed, 0))[0], tf.int32)
  taken_before_S = tf.minimum(tf.cumsum(ngram_S, exclusive=True), goal)
  length_S = tf.minimum(ngram_S, goal - taken_before_S)
  context_S = length_S * s.mask_alpha // s.mask_beta
  slack_S = tf.cast(context_S - length_S, tf.float32)
  left_S = tf.cast(tf.random.stateless_uniform([spans], _fold(seed, 1)) * slack_S, tf.int32)
  start_S = tf.cumsum(context_S, exclusive=True) + left_S
  end_S = start_S + length_S
  used_S = (length_S > 0) & (end_S <= n)
  position_N = tf.range(n)
  in_span_SN = (position_N[None] >= start_S[:, None]) & (position_N[None] < end_S[:, None]) & used_S[:, None]
  target_N = tf.reduce_any(in_span_SN, axis=0) & candidate_N
  missing = goal - tf.reduce_sum(tf.cast(target_N, tf.int32))
  free_N = candidate_N & ~target_N
  priority_N = tf.where(free_N, tf.random.stateless_uniform([n], _fold(seed, 2)), 2.0)
  place_N = tf.argsort(tf.argsort(priority_N))
  return target_N | (free_N & (place_N < missing))


def block_order(n: int, perm_size: int, seed: tf.Tensor) -> tf.Tensor:
  """[N] int32: position b * perm_size + k has place b * perm_size + pi(k), pi one random permutation."""
  offsets = tf.argsort(tf.random.stateless_uniform([perm_size], seed))
  return tf.reshape(tf.range(0, n, perm_size)[:, None] + offsets[None, :], [n])


def _example(chunk_C: tf.Tensor, partner_C: tf.Tensor, seed: tf.Tensor, special_V: tf.Tensor,
             s: Settings) -> dict:
  L, R, C = s.seq_len, s.reuse_len, s.chunk_len
  a_end = R + tf.random.stateless_uniform([], _fold(seed, 0), 1, C - R, tf.int32)
  random_b = tf.random.stateless_uniform([], _fold(seed, 1)) < s.random_b_prob
  body_C = tf.where(random_b & (tf.range(C) >= a_end), partner_C, chunk_C)
  input_ids = tf.concat([body_C[:a_end], [s.sep_id], body_C[a_end:], [s.sep_id, s.cls_id]], 0)
  input_ids = tf.ensure_shape(input_ids, [L])
  token_type_ids = tf.concat([tf.zeros([a_end + 1], tf.int32), tf.ones([C - a_end + 1], tf.int32), [2]], 0)
  candidate_L = ~tf.gather(special_V, input_ids)
  in_order_L = (input_ids == s.sep_id) | (input_ids == s.cls_id)  # besides the targets: the release's func tokens
  P = s.num_predict
  parts = [(0, R, P - P // 2), (R, L, P // 2)] if R else [(0, L, P)]
  targets, ranks = [], []
  for p, (begin, end, goal) in enumerate(parts):
    target = span_targets(candidate_L[begin:end], goal, _fold(seed, 10 + p), s)
    place = block_order(end - begin, s.perm_size, _fold(seed, 20 + p))
    targets.append(target)
    ranks.append(p * (L + 1) + tf.where(target | in_order_L[begin:end], 1 + place, 0))
  is_target = tf.concat(targets, 0)
  positions = tf.cast(tf.where(is_target)[:, 0], tf.int32)[:s.num_predict]
  count = tf.shape(positions)[0]
  padding = [[0, s.num_predict - count]]
  return {"input_ids": input_ids, "token_type_ids": tf.ensure_shape(token_type_ids, [L]),
          "perm_rank": tf.concat(ranks, 0), "is_target": tf.cast(is_target, tf.int32),
          "target_positions": tf.pad(positions, padding),
          "target_ids": tf.pad(tf.gather(input_ids, positions), padding),
          "target_weights": tf.pad(tf.ones([count], tf.float32), padding)}


def _with_eod(eod_id: int):
  @tf.autograph.experimental.do_not_convert
  def with_eod(document):
    return tf.concat([document["token_ids"], [eod_id]], 0)
  return with_eod


def _built(chunk_C, partner_C, seed, reverse: bool, special: tf.Tensor, s: Settings) -> dict:
  flip = (lambda x: x[::-1]) if reverse else (lambda x: x)
  return dict(_example(flip(chunk_C), flip(partner_C), seed, special, s), reversed=tf.constant(int(reverse)))


def examples(documents: tf.data.Dataset, special_V: np.ndarray, s: Settings, seed: int,
             train: bool) -> tf.data.Dataset:
  """Unbatched examples from documents {"token_ids": int32 [T], ...}; see the module docstring."""
  special = tf.constant(special_V)
  chunks = documents.map(_with_eod(s.eod_id)).unbatch().batch(s.chunk_len, drop_remainder=True)
  partners = chunks.shuffle(PARTNER_SHUFFLE, seed=seed, reshuffle_each_iteration=train)

  @tf.autograph.experimental.do_not_convert
  def build(index, pair) -> dict:
    chunk_C, partner_C = pair
    chunk_seed = tf.stack([tf.constant(seed, tf.int64), index])
    built = [_built(chunk_C, partner_C, _fold(chunk_seed, d), bool(d), special, s)
             for d in ((0, 1) if s.bi_data else (0,))]
    return {name: tf.stack([b[name] for b in built]) for name in built[0]}

  pairs = tf.data.Dataset.zip(chunks, partners).enumerate()
  return pairs.map(build, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()


def stream_batches(documents: tf.data.Dataset, special_V: np.ndarray, s: Settings, seed: int, train: bool,
                   rows: int, steps: int) -> tf.data.Dataset:
  """Batches of `rows` examples in which row r of each batch continues row r of the batch before, as XLNet's
  pretraining data does, so that the memory of a row's last segment precedes its next one.

  The token stream is cut into stretches of (steps - 1) * reuse_len + chunk_len tokens; a stretch gives one row
  `steps` examples, example t from its tokens t * reuse_len onwards, so the reuse part of example t + 1 follows
  that of example t (which is what the memory holds). `rows` stretches make `steps` batches; then the rows
  start new stretches. With bi_data the rows come in pairs, a stretch read forwards and the same stretch read
  backwards (the original's forward and backward halves of the batch).
  """
  directions = 2 if s.bi_data else 1
  R, C = s.reuse_len, s.chunk_len
  special = tf.constant(special_V)
  tokens = documents.map(_with_eod(s.eod_id)).unbatch()
  stretches = tokens.batch((steps - 1) * R + C, drop_remainder=True)
  partners = tokens.batch(C, drop_remainder=True).shuffle(PARTNER_SHUFFLE, seed=seed,
                                                          reshuffle_each_iteration=train).batch(steps)
  window_KC = tf.range(steps)[:, None] * R + tf.range(C)[None, :]

  @tf.autograph.experimental.do_not_convert
  def windows(stretch_T, partners_KC):
    texts = [stretch_T, stretch_T[::-1]][:directions]
    return tf.data.Dataset.from_tensor_slices({
        "chunk": tf.concat([tf.gather(t, window_KC) for t in texts], 0),
        "partner": tf.tile(partners_KC, [directions, 1]),
        "reverse": tf.repeat(tf.range(directions), steps)})

  @tf.autograph.experimental.do_not_convert
  def build(index, window) -> dict:
    reverse = window["reverse"]
    partner_C = tf.where(reverse == 1, window["partner"][::-1], window["partner"])
    window_seed = tf.stack([tf.constant(seed, tf.int64), index])
    return dict(_example(window["chunk"], partner_C, window_seed, special, s), reversed=reverse)

  examples_ = tf.data.Dataset.zip(stretches, partners).flat_map(windows).enumerate()
  examples_ = examples_.map(build, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  grouped = examples_.batch(steps, drop_remainder=True).batch(rows, drop_remainder=True)

  @tf.autograph.experimental.do_not_convert
  def by_step(group):  # [rows, steps, ...] -> `steps` batches of [rows, ...]
    return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(
        lambda x: tf.transpose(x, [1, 0] + list(range(2, x.shape.rank))), group))

  return grouped.flat_map(by_step)
