"""Documents -> token sequences in tf.data graph ops: BERT's segment pairs and RoBERTa's full sentences.

A document is {"token_ids": int32 [T], "sentence_lengths": int32 [S]}: its sentences' ids concatenated.
Both transforms yield sequences {"input_ids", "token_type_ids", "attention_mask": int32 [L],
"sentence_label": int32 [], "seed": int64 [2]}: [CLS] A [SEP] (B [SEP]) padded to L with the pad id, type
ids 1 on B and its [SEP], and a seed of the sequence's own for the masking that follows.

Randomness is stateless, drawn from (seed, the document's position in the stream): the same seed and
documents give the same sequences, and a document read again in a later epoch (at a later position) is cut
and paired anew.
"""

import dataclasses

from bert_jax.data.tf_cpu import tf

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class SpecialIds:
  cls: int
  sep: int
  pad: int


def _document_seed(seed: int, index: tf.Tensor) -> tf.Tensor:
  return tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])


def _fold(seed: tf.Tensor, data: int | tf.Tensor) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(seed, tf.cast(data, tf.int64))


def _sentence_bounds(lengths_S: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """(count, starts, ends) of the non-empty sentences (padding sentences have length 0)."""
  count = tf.math.count_nonzero(lengths_S, dtype=tf.int32)
  ends = tf.cumsum(lengths_S[:count])
  return count, ends - lengths_S[:count], ends


# --- BERT / ALBERT: segment pairs ------------------------------------------------------------------------

def segment_pairs(documents: tf.data.Dataset, seq_len: int, sentence_task: str, short_seq_prob: float,
                  ids: SpecialIds, seed: int) -> tf.data.Dataset:
  """BERT's create_pretraining_data.py, document by document: a target length is drawn for the document
  (seq_len - 3; with probability short_seq_prob a uniform length in [2, seq_len - 3]); sentences gather into
  a chunk until they reach it; the chunk splits into A and B at a random sentence boundary. nsp: half the
  time, and always when the chunk is one sentence, B is instead taken from another document (label 1), and
  the chunk's sentences after A are left for the next chunk. sop (ALBERT's file): half the time A and B are
  swapped (label 1); a one-sentence chunk gets a B from another document, also label 1. none: the chunk is
  one segment of up to seq_len - 2 tokens. A pair longer than the limit loses tokens from the longer
  segment, each from its front or back at random.

  A random B comes from the document before in the stream; the first document's from the second. Only a
  stream of one document pairs it with itself (as the original does when the corpus has one document).
  """
  max_tokens = seq_len - (2 if sentence_task == "none" else 3)

  @tf.autograph.experimental.do_not_convert
  def sequences(index, document, partner):
    return _pair_sequences(document["token_ids"], document["sentence_lengths"], partner["token_ids"],
                           partner["sentence_lengths"], _document_seed(seed, index), seq_len, max_tokens,
                           sentence_task, short_seq_prob, ids)

  paired = _with_partners(documents)
  return paired.map(sequences, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()


def _with_partners(documents: tf.data.Dataset) -> tf.data.Dataset:
  """(position in the stream, document, partner): the partner is the document before; the first document
  waits for the second and takes it as its partner. A marker after a finite stream flushes a lone first
  document (its own partner)."""
  empty = tf.nest.map_structure(lambda spec: tf.zeros([0] * spec.shape.rank, spec.dtype), documents.element_spec)
  marked = documents.enumerate().concatenate(tf.data.Dataset.from_tensors((tf.constant(-1, tf.int64), empty)))

  def pick(condition, a: dict, b: dict) -> dict:
    return {k: tf.cond(condition, lambda k=k: a[k], lambda k=k: b[k]) for k in a}

  @tf.autograph.experimental.do_not_convert
  def step(state, indexed):
    first, previous, seen = state
    index, document = indexed
    at_end = index < 0
    # Slot 0 emits the first document: with the second when it arrives, or alone at the end.
    first_out = (tf.constant(0, tf.int64), first, pick(at_end, first, document), seen == 1)
    later_out = (index, document, previous, (seen >= 1) & ~at_end)
    new_first = pick(seen == 0, document, first)
    return (new_first, document, seen + 1), (first_out, later_out)

  @tf.autograph.experimental.do_not_convert
  def slots(first_out, later_out):
    return tf.data.Dataset.from_tensors(first_out).concatenate(tf.data.Dataset.from_tensors(later_out))

  pairs = marked.scan((empty, empty, tf.constant(0, tf.int64)), step).flat_map(slots)
  return pairs.filter(lambda index, document, partner, valid: valid).map(
      lambda index, document, partner, valid: (index, document, partner))


def _pair_sequences(tokens_T, lengths_S, partner_T, partner_lengths_S, seed, seq_len, max_tokens, sentence_task,
                    short_seq_prob, ids) -> dict:
  rows_N6 = _pair_ranges(lengths_S, partner_lengths_S, seed, max_tokens, sentence_task, short_seq_prob)
  a_start, a_end, b_start, b_end, b_in_partner, label = tf.unstack(rows_N6, axis=1)
  if sentence_task == "sop":
    swap = (label > 0) & (b_in_partner == 0)
    a_start, b_start = tf.where(swap, b_start, a_start), tf.where(swap, a_start, b_start)
    a_end, b_end = tf.where(swap, b_end, a_end), tf.where(swap, a_end, b_end)
  a_len, b_len = a_end - a_start, b_end - b_start
  a_keep, b_keep = _truncated_lengths(a_len, b_len, max_tokens)
  count = tf.shape(rows_N6)[0]
  drop_seed = _fold(seed, 1)
  a_front = tf.random.stateless_binomial([count], _fold(drop_seed, 0), tf.cast(a_len - a_keep, tf.float32), 0.5)
  b_front = tf.random.stateless_binomial([count], _fold(drop_seed, 1), tf.cast(b_len - b_keep, tf.float32), 0.5)
  a_start, b_start = a_start + a_front, b_start + b_front

  # Gather every position from one source row: the document, its partner, then [CLS] [SEP] [PAD].
  source = tf.concat([tokens_T, partner_T, [ids.cls, ids.sep, ids.pad]], 0)
  specials = tf.shape(tokens_T)[0] + tf.shape(partner_T)[0]
  j = tf.range(seq_len)[None, :]
  a_keep, b_keep = a_keep[:, None], b_keep[:, None]
  has_b = sentence_task != "none"
  b_base = tf.where(b_in_partner > 0, tf.shape(tokens_T)[0], 0)[:, None] + b_start[:, None]
  length = a_keep + 2 + (b_keep + 1 if has_b else 0)
  index = tf.fill(tf.shape(j + a_keep), specials + 2)
  index = tf.where(j == 0, specials, index)
  index = tf.where((j >= 1) & (j <= a_keep), a_start[:, None] + j - 1, index)
  index = tf.where(j == a_keep + 1, specials + 1, index)
  in_b = (j >= a_keep + 2) & (j < length) if has_b else tf.zeros_like(j + a_keep, tf.bool)
  if has_b:
    index = tf.where(in_b & (j < length - 1), b_base + j - a_keep - 2, index)
    index = tf.where(j == length - 1, specials + 1, index)
  return {"input_ids": tf.gather(source, index),
          "token_type_ids": tf.cast(in_b, tf.int32),
          "attention_mask": tf.cast(j < length, tf.int32),
          "sentence_label": label,
          "seed": tf.random.experimental.stateless_split(_fold(seed, 2), count)}


def _truncated_lengths(a_len, b_len, max_tokens: int) -> tuple[tf.Tensor, tf.Tensor]:
  """Lengths after BERT's truncation: one token at a time from the longer segment (B on ties)."""
  excess = tf.maximum(a_len + b_len - max_tokens, 0)
  a_only = a_len - excess >= b_len
  b_only = (~a_only) & (b_len - excess >= a_len)
  both = ~(a_only | b_only)
  a_keep = tf.where(a_only, a_len - excess, tf.where(both, (max_tokens + 1) // 2, a_len))
  b_keep = tf.where(b_only, b_len - excess, tf.where(both, max_tokens // 2, b_len))
  return a_keep, b_keep


def _pair_ranges(lengths_S, partner_lengths_S, seed, max_tokens: int, sentence_task: str,
                 short_seq_prob: float) -> tf.Tensor:
  """[N, 6] token ranges of a document's pairs: a_start, a_end, b_start, b_end, b_in_partner, label."""
  count, starts, ends = _sentence_bounds(lengths_S)
  partner_count, partner_starts, partner_ends = _sentence_bounds(partner_lengths_S)
  loop_seed = _fold(seed, 0)
  u_target = tf.random.stateless_uniform([2], _fold(seed, 3))
  short = tf.minimum(2 + tf.cast(tf.floor(u_target[1] * (max_tokens - 1)), tf.int32), max_tokens)
  target = tf.where(u_target[0] < short_seq_prob, short, max_tokens)  # one target for the whole document

  def body(step, chunk_first, n, rows):
    u = tf.random.stateless_uniform([3], _fold(loop_seed, step))
    # The chunk: sentences from chunk_first until they reach the target length (or the document ends).
    reached = (ends - starts[chunk_first] >= target) & (tf.range(count) >= chunk_first)
    i = tf.where(tf.reduce_any(reached), tf.argmax(tf.cast(reached, tf.int32), output_type=tf.int32), count - 1)
    m = i - chunk_first + 1
    a_stop = chunk_first + tf.where(m > 1, 1 + tf.cast(tf.floor(u[0] * tf.cast(m - 1, tf.float32)), tf.int32), 1)
    split = ends[a_stop - 1]
    a_start, a_end, b_start, b_end, next_first = starts[chunk_first], split, split, ends[i], i + 1
    b_in_partner = label = 0
    if sentence_task in ("nsp", "sop"):
      coin = u[1] < 0.5
      random_next = (m == 1) | coin if sentence_task == "nsp" else m == 1  # a lone sentence has no true next
      target_b = tf.maximum(1, target - (a_end - a_start))
      r = tf.minimum(tf.cast(tf.floor(u[2] * tf.cast(partner_count, tf.float32)), tf.int32), partner_count - 1)
      reach = (partner_ends - partner_starts[r] >= target_b) & (tf.range(partner_count) >= r)
      last = tf.where(tf.reduce_any(reach), tf.argmax(tf.cast(reach, tf.int32), output_type=tf.int32),
                      partner_count - 1)
      b_start = tf.where(random_next, partner_starts[r], b_start)
      b_end = tf.where(random_next, partner_ends[last], b_end)
      b_in_partner = tf.cast(random_next, tf.int32)
      next_first = tf.where(random_next, a_stop, next_first)
      label = tf.cast(random_next | coin if sentence_task == "sop" else random_next, tf.int32)
    else:
      a_end = b_start = ends[i]
    row = tf.stack([a_start, a_end, b_start, b_end, b_in_partner, label])
    rows = tf.tensor_scatter_nd_update(rows, [[n]], [row])
    return step + 1, next_first, n + 1, rows

  state = (0, 0, 0, tf.zeros([count, 6], tf.int32))
  _, _, n, rows = tf.while_loop(lambda step, chunk_first, *_: chunk_first < count, body, state)
  return rows[:n]


# --- RoBERTa: full sentences packed across documents ---------------------------------------------------

def full_sentences(documents: tf.data.Dataset, seq_len: int, ids: SpecialIds, seed: int) -> tf.data.Dataset:
  """RoBERTa's FULL-SENTENCES: whole sentences packed in order into [CLS] ... [SEP] of up to seq_len tokens,
  continuing into the next document after an extra [SEP]; a sentence longer than seq_len - 2 is cut into
  pieces. Whatever is left when a finite stream ends (less than one sequence) is dropped."""
  max_tokens = seq_len - 2
  empty = (tf.zeros([0], tf.int32), tf.zeros([0], tf.int32), tf.zeros([0], tf.bool))

  @tf.autograph.experimental.do_not_convert
  def pack(left, indexed):
    index, document = indexed
    left_tokens, left_lengths, left_first = left
    count, _, ends = _sentence_bounds(document["sentence_lengths"])
    piece_lengths, piece_first = _pieces(document["sentence_lengths"][:count], max_tokens)
    tokens = tf.concat([left_tokens, document["token_ids"][:ends[-1]]], 0)
    lengths = tf.concat([left_lengths, piece_lengths], 0)
    first = tf.concat([left_first, piece_first], 0)
    sequence_of, sep_before = _greedy_pack(lengths, first, max_tokens)
    emitted = tf.math.count_nonzero(sequence_of < sequence_of[-1], dtype=tf.int32)
    emitted_tokens = tf.reduce_sum(lengths[:emitted])
    sequences = _assemble_packed(tokens[:emitted_tokens], lengths[:emitted], sep_before[:emitted],
                                 sequence_of[:emitted], seq_len, ids)
    sequences["seed"] = tf.random.experimental.stateless_split(_fold(_document_seed(seed, index), 2),
                                                              tf.shape(sequences["input_ids"])[0])
    return (tokens[emitted_tokens:], lengths[emitted:], first[emitted:]), sequences

  return documents.enumerate().scan(empty, pack).unbatch()


def _pieces(lengths_S, max_tokens: int) -> tuple[tf.Tensor, tf.Tensor]:
  """Sentence lengths cut into pieces of at most max_tokens, and a flag on the document's first piece."""
  counts = (lengths_S + max_tokens - 1) // max_tokens
  k = tf.ragged.range(counts)
  pieces = tf.minimum(max_tokens, (tf.gather(lengths_S, k.value_rowids()) - k.flat_values * max_tokens))
  return pieces, tf.range(tf.shape(pieces)[0]) == 0


def _greedy_pack(lengths_P, document_first_P, max_tokens: int) -> tuple[tf.Tensor, tf.Tensor]:
  """Per piece: the sequence it lands in, and whether a document-separating [SEP] precedes it."""

  def place(state, piece):
    used, sequence, _ = state
    length, starts_document = piece
    with_sep = starts_document & (used > 0)
    cost = length + tf.cast(with_sep, tf.int32)
    overflow = used + cost > max_tokens
    return (tf.where(overflow, length, used + cost), sequence + tf.cast(overflow, tf.int32), with_sep & ~overflow)

  _, sequence_of, sep_before = tf.scan(place, (lengths_P, document_first_P), (0, 0, False))
  return sequence_of, sep_before


def _assemble_packed(tokens, lengths_P, sep_before_P, sequence_of_P, seq_len: int, ids: SpecialIds) -> dict:
  pieces = tf.RaggedTensor.from_row_lengths(tokens, lengths_P)
  seps = tf.RaggedTensor.from_row_lengths(tf.fill([tf.reduce_sum(tf.cast(sep_before_P, tf.int32))], ids.sep),
                                          tf.cast(sep_before_P, tf.int32))
  pieces = tf.concat([seps, pieces], 1)
  sequences = tf.RaggedTensor.from_value_rowids(pieces, sequence_of_P).merge_dims(1, 2)
  count = sequences.nrows(out_type=tf.int32)
  edge = tf.RaggedTensor.from_tensor(tf.zeros([count, 1], tf.int32), row_splits_dtype=sequences.row_splits.dtype)
  sequences = tf.concat([edge + ids.cls, sequences, edge + ids.sep], 1)
  lengths = sequences.row_lengths(axis=1)
  positions = tf.range(seq_len, dtype=lengths.dtype)[None, :]
  return {"input_ids": sequences.to_tensor(ids.pad, shape=[None, seq_len]),
          "token_type_ids": tf.zeros([count, seq_len], tf.int32),
          "attention_mask": tf.cast(positions < lengths[:, None], tf.int32),
          "sentence_label": tf.zeros([count], tf.int32)}
