"""Span corruption in tf.data graph ops: noise masks, sentinels, chunks of concatenated documents, packing.

The semantics (counts, interleaving, sentinels, the features of a row) are documented in span_corruption.py.
"""

from bert_jax.data.tf_cpu import tf

DOCUMENTS_PER_GROUP = 128  # documents concatenated before cutting chunks, as T5's pretraining does


def _random_segment_lengths(num_items, num_segments, seed):
  """A uniformly random split of num_items into num_segments positive lengths: cuts at num_segments - 1
  of the num_items - 1 gaps."""
  scores = tf.random.stateless_uniform([num_items - 1], seed)
  is_cut = tf.argsort(tf.argsort(scores)) < num_segments - 1
  starts = tf.concat([[1], tf.cast(is_cut, tf.int32)], 0)
  return tf.math.bincount(tf.cumsum(starts) - 1, minlength=num_segments, maxlength=num_segments)


def noise_mask(length, noise_density: float, mean_noise_span_length: float, seed):
  """Boolean [length]: noise and non-noise spans interleaved, starting with non-noise."""
  num_noise = tf.cast(tf.round(tf.cast(length, tf.float32) * noise_density), tf.int32)
  num_noise = tf.clip_by_value(num_noise, 1, length - 1)
  num_spans = tf.cast(tf.round(tf.cast(num_noise, tf.float32) / mean_noise_span_length), tf.int32)
  num_spans = tf.maximum(num_spans, 1)
  seeds = tf.random.experimental.stateless_split(seed, 2)
  noise_lengths = _random_segment_lengths(num_noise, num_spans, seeds[0])
  keep_lengths = _random_segment_lengths(length - num_noise, num_spans, seeds[1])
  span_lengths = tf.reshape(tf.stack([keep_lengths, noise_lengths], axis=1), [-1])
  return tf.repeat(tf.range(2 * num_spans), span_lengths) % 2 == 1


def replace_spans(tokens, drop, first_sentinel: int):
  """Each run of `drop` tokens becomes one sentinel, counting down from first_sentinel."""
  starts = drop & ~tf.concat([[False], drop[:-1]], 0)
  sentinels = first_sentinel - (tf.cumsum(tf.cast(starts, tf.int32)) - 1)
  return tf.boolean_mask(tf.where(starts, sentinels, tokens), ~drop | starts)


def corrupt(tokens, noise_density: float, mean_noise_span_length: float, first_sentinel: int, eos_id: int,
            seed) -> dict:
  """{'inputs', 'targets'} of one chunk of raw tokens (both end with EOS)."""
  noise = noise_mask(tf.size(tokens), noise_density, mean_noise_span_length, seed)
  eos = tf.constant([eos_id], tf.int32)
  return {"inputs": tf.concat([replace_spans(tokens, noise, first_sentinel), eos], 0),
          "targets": tf.concat([replace_spans(tokens, ~noise, first_sentinel), eos], 0)}


def chunks(documents: tf.data.Dataset, raw_length: int) -> tf.data.Dataset:
  """1-D token chunks of raw_length (shorter at the end of each group of concatenated documents)."""
  @tf.autograph.experimental.do_not_convert
  def cut(group):
    tokens = group.flat_values
    starts = tf.range(0, tf.size(tokens), raw_length)
    return tf.data.Dataset.from_tensor_slices(tf.RaggedTensor.from_row_starts(tokens, starts))

  grouped = documents.map(to_int32).ragged_batch(DOCUMENTS_PER_GROUP)
  return grouped.flat_map(cut).filter(long_enough)


@tf.autograph.experimental.do_not_convert
def to_int32(tokens):
  return tf.cast(tokens, tf.int32)


@tf.autograph.experimental.do_not_convert
def long_enough(tokens):
  return tf.size(tokens) >= 2


def padded_row(example: dict, inputs_length: int, targets_length: int) -> dict:
  pad = lambda x, n: tf.pad(x, [[0, n - tf.size(x)]])
  n_in, n_tg = tf.size(example["inputs"]), tf.size(example["targets"])
  return {"encoder_input_tokens": pad(example["inputs"], inputs_length),
          "encoder_segment_ids": pad(tf.ones([n_in], tf.int32), inputs_length),
          "decoder_target_tokens": pad(example["targets"], targets_length),
          "decoder_segment_ids": pad(tf.ones([n_tg], tf.int32), targets_length),
          "decoder_positions": pad(tf.range(n_tg), targets_length)}


def pack(examples: tf.data.Dataset, inputs_length: int, targets_length: int) -> tf.data.Dataset:
  """Greedy packing in stream order: an example joins the open row while both its inputs and targets
  fit, else the row is emitted and a new one starts. The last open row is emitted at the end."""
  nothing = tf.zeros([0], tf.int32)
  empty = padded_row({"inputs": nothing, "targets": nothing}, inputs_length, targets_length)
  state0 = (empty, tf.constant(0), tf.constant(0), tf.constant(0))

  def place(row, name, values, start):
    indices = (start + tf.range(tf.size(values)))[:, None]
    return tf.tensor_scatter_nd_update(row[name], indices, values)

  @tf.autograph.experimental.do_not_convert
  def step(state, item):
    row, used_in, used_tg, segments = state
    example, is_end = item
    n_in, n_tg = tf.size(example["inputs"]), tf.size(example["targets"])
    fits = (used_in + n_in <= inputs_length) & (used_tg + n_tg <= targets_length) & ~is_end
    emit = ~fits & (segments > 0)
    start = {k: tf.where(fits, v, tf.zeros_like(v)) for k, v in row.items()}
    used_in, used_tg = tf.where(fits, used_in, 0), tf.where(fits, used_tg, 0)
    segment = tf.where(fits, segments, 0) + 1
    updated = {
        "encoder_input_tokens": place(start, "encoder_input_tokens", example["inputs"], used_in),
        "encoder_segment_ids": place(start, "encoder_segment_ids", tf.fill([n_in], segment), used_in),
        "decoder_target_tokens": place(start, "decoder_target_tokens", example["targets"], used_tg),
        "decoder_segment_ids": place(start, "decoder_segment_ids", tf.fill([n_tg], segment), used_tg),
        "decoder_positions": place(start, "decoder_positions", tf.range(n_tg), used_tg)}
    return (updated, used_in + n_in, used_tg + n_tg, segment), (emit, row)

  end = {"inputs": tf.zeros([0], tf.int32), "targets": tf.zeros([0], tf.int32)}
  marked = examples.map(_not_the_end).concatenate(tf.data.Dataset.from_tensors((end, True)))
  return marked.scan(state0, step).filter(_is_emitted).map(_row)


@tf.autograph.experimental.do_not_convert
def _not_the_end(example):
  return example, False


@tf.autograph.experimental.do_not_convert
def _is_emitted(emit, row):
  return emit


@tf.autograph.experimental.do_not_convert
def _row(emit, row):
  return row
