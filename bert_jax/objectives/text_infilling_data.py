"""BART's noise in tf graph ops, one block at a time: the blocks of whole sentences, sentence permutation, whole-word
text infilling with Poisson span lengths, and insertions (what each does and where it departs from fairseq's
denoising_dataset.py: text_infilling.py)."""

import dataclasses
import math

import numpy as np

from bert_jax.data.tf_cpu import tf

MAX_SPAN_DRAWS_SLACK = 16  # span lengths drawn: 2 x the words to mask + this; their running sum reaches the budget


@dataclasses.dataclass(frozen=True)
class Noise:
  bos: int
  eos: int
  mask: int
  word_start_V: tf.Tensor  # bool [V]: the piece begins a word (fairseq's mask_whole_words)
  replacements: tf.Tensor  # int32: the ids a random token is drawn from
  mask_ratio: float = 0.3
  random_ratio: float = 0.1
  poisson_lambda: float = 3.0
  permute_sentences: bool = True
  max_length: int = 0  # > 0: a longer source keeps its first max_length - 1 tokens and EOS


def poisson_probs(lam: float) -> np.ndarray:
  """fairseq's span-length distribution: Poisson(lam) p(k) for k = 0, 1, ... up to the first p(k) below 1e-7,
  float32, normalized as torch.distributions.Categorical does."""
  terms: list[float] = []
  term = math.exp(-lam)
  for k in range(128):
    terms.append(term)
    term *= lam / (k + 1)
    if terms[-1] < 1e-7:
      break
  ps = np.asarray(terms, np.float32)
  return ps / ps.sum()


def blocks(documents: tf.data.Dataset, max_tokens: int) -> tf.data.Dataset:
  """fairseq's TokenBlockDataset with break_mode complete_doc: a document's sentences gathered in order into blocks
  of at most max_tokens (a sentence longer than that cut into pieces first), never across documents.
  Each block is {"tokens": int32 [n], "sentence_lengths": int32 [s]}."""

  @tf.autograph.experimental.do_not_convert
  def cut(document):
    lengths_S = document["sentence_lengths"]
    lengths_S = tf.cast(lengths_S[:tf.math.count_nonzero(lengths_S, dtype=tf.int32)], tf.int32)
    k = tf.ragged.range((lengths_S + max_tokens - 1) // max_tokens)
    pieces_P = tf.minimum(max_tokens, tf.gather(lengths_S, k.value_rowids()) - k.flat_values * max_tokens)

    def place(state, length):
      used, block = state
      overflow = used + length > max_tokens
      return tf.where(overflow, length, used + length), block + tf.cast(overflow, tf.int32)

    _, block_P = tf.scan(place, pieces_P, (tf.constant(0), tf.constant(0)))
    tokens = tf.cast(document["token_ids"][:tf.reduce_sum(pieces_P)], tf.int32)
    block_lengths = tf.math.segment_sum(pieces_P, block_P)
    return tf.data.Dataset.from_tensor_slices({
        "tokens": tf.RaggedTensor.from_row_lengths(tokens, block_lengths),
        "sentence_lengths": tf.RaggedTensor.from_value_rowids(pieces_P, block_P)})

  return documents.filter(_has_text).flat_map(cut)


@tf.autograph.experimental.do_not_convert
def _has_text(document):
  return tf.reduce_sum(document["sentence_lengths"]) > 0


def _fold(seed: tf.Tensor, data: int) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(seed, tf.constant(data, tf.int64))


def permute(tokens: tf.Tensor, sentence_lengths: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """The block's sentences in a uniformly random order (fairseq's permute_sentences with ratio 1.0)."""
  order = tf.argsort(tf.random.stateless_uniform(tf.shape(sentence_lengths), seed))
  return tf.gather(tf.RaggedTensor.from_row_lengths(tokens, sentence_lengths), order).flat_values


def span_lengths(num_to_mask: tf.Tensor, poisson_lambda: float, seed: tf.Tensor) -> tf.Tensor:
  """Poisson lengths (0 included) drawn until their sum reaches num_to_mask, the last one cut to meet it exactly;
  none when num_to_mask is 0."""
  logits = tf.math.log(tf.constant(poisson_probs(poisson_lambda)))[None]
  drawn = tf.cast(tf.random.stateless_categorical(logits, 2 * num_to_mask + MAX_SPAN_DRAWS_SLACK, seed)[0], tf.int32)
  total = tf.cumsum(drawn)
  last = tf.minimum(tf.reduce_sum(tf.cast(total < num_to_mask, tf.int32)), tf.size(drawn) - 1)
  count = tf.where(num_to_mask > 0, last + 1, 0)
  before = total[last] - drawn[last]
  return tf.concat([drawn[:last], [num_to_mask - before]], 0)[:count]


def _random_ids(count: tf.Tensor, noise: Noise, seed: tf.Tensor) -> tf.Tensor:
  index = tf.random.stateless_uniform([count], seed, 0, tf.shape(noise.replacements)[0], tf.int32)
  return tf.gather(noise.replacements, index)


def mask_spans(source: tf.Tensor, noise: Noise, seed: tf.Tensor) -> dict:
  """fairseq's add_whole_word_mask with span-poisson lengths and replace_length 1 on [bos ... eos]: {"source",
  "lengths": every drawn length (0: an insertion), "starts": where the spans of length > 0 begin}."""
  length = tf.size(source)
  inner = (tf.range(length) > 0) & (tf.range(length) < length - 1)
  is_word_start = tf.gather(noise.word_start_V, source) & inner
  words = tf.reduce_sum(tf.cast(is_word_start, tf.int32))
  num_to_mask = tf.cast(tf.math.ceil(tf.cast(words, tf.float32) * noise.mask_ratio), tf.int32)
  lengths = span_lengths(num_to_mask, noise.poisson_lambda, _fold(seed, 0))
  spans = tf.boolean_mask(lengths, lengths > 0)
  count = tf.size(spans)
  # Distinct word starts in a uniformly random order, as torch.randperm picks them.
  scores = tf.random.stateless_uniform([length], _fold(seed, 1))
  starts = tf.argsort(tf.where(is_word_start, scores, 2.0))[:count]
  # A span covers its first word and the words after it up to its length, never the final EOS.
  word_index = tf.cumsum(tf.cast(is_word_start, tf.int32))
  last_word = tf.gather(word_index, starts) + spans - 1
  ends = tf.minimum(tf.searchsorted(word_index, last_word, side="right") - 1, length - 2)
  edges = tf.concat([starts + 1, ends + 1], 0)[:, None]
  delta = tf.scatter_nd(edges, tf.concat([tf.ones([count], tf.int32), -tf.ones([count], tf.int32)], 0),
                        [length + 1])
  deleted = tf.cumsum(delta)[:length] > 0
  use_random = tf.random.stateless_uniform([count], _fold(seed, 2)) < noise.random_ratio
  replacement = tf.where(use_random, _random_ids(count, noise, _fold(seed, 3)), noise.mask)
  source = tf.tensor_scatter_nd_update(source, starts[:, None], replacement)
  return {"source": tf.boolean_mask(source, ~deleted), "lengths": lengths, "starts": starts}


def insert(source: tf.Tensor, count: tf.Tensor, noise: Noise, seed: tf.Tensor) -> tf.Tensor:
  """fairseq's add_insertion_noise(source, count / len(source)): that many new tokens at random places between
  the first and the last token, ceil(10%) of them random tokens (random_ratio), the others <mask>."""
  length = tf.size(source)
  n = tf.cast(tf.math.ceil(tf.cast(length, tf.float64) * (tf.cast(count, tf.float64) / tf.cast(length, tf.float64))),
              tf.int32)
  total = length + n
  places = tf.range(total)
  scores = tf.random.stateless_uniform([total], _fold(seed, 0))
  chosen = tf.argsort(tf.where((places >= 1) & (places <= total - 2), scores, 2.0))[:n]
  num_random = tf.cast(tf.math.ceil(tf.cast(n, tf.float64) * noise.random_ratio), tf.int32)
  values = tf.where(tf.range(n) < num_random, _random_ids(n, noise, _fold(seed, 1)), noise.mask)
  is_new = tf.scatter_nd(chosen[:, None], tf.ones([n], tf.int32), [total]) > 0
  new_tokens = tf.scatter_nd(chosen[:, None], values, [total])
  kept = tf.gather(source, tf.maximum(tf.cumsum(tf.cast(~is_new, tf.int32)) - 1, 0))
  return tf.where(is_new, new_tokens, kept)


def corrupt(tokens: tf.Tensor, sentence_lengths: tf.Tensor, noise: Noise, seed: tf.Tensor) -> dict:
  """{"source": the noised [bos ... eos], "target": [bos tokens eos], "lengths", "starts"} of one block."""
  edge = lambda x: tf.concat([[noise.bos], x, [noise.eos]], 0)
  permuted = permute(tokens, sentence_lengths, _fold(seed, 0)) if noise.permute_sentences else tokens
  masked = mask_spans(edge(permuted), noise, _fold(seed, 1))
  inserts = tf.size(masked["lengths"]) - tf.size(masked["starts"])
  source = insert(masked["source"], inserts, noise, _fold(seed, 2))
  if noise.max_length:
    source = tf.cond(tf.size(source) > noise.max_length,
                     lambda: tf.concat([source[:noise.max_length - 1], [noise.eos]], 0), lambda: source)
  return {"source": source, "target": edge(tokens), "lengths": masked["lengths"], "starts": masked["starts"]}
