"""MASS's masked fragment in tf graph ops, one sentence at a time (what it does and where it departs from the
release: mass.py).

Places are counted as the release counts them, in the sentence framed </s> tokens </s> (l = n + 2 for n tokens):
the fragment covers places start .. start + k - 1 within 1 .. l - 1 (the closing </s> may be in it), and the
decoder's input at a fragment place p is the token at p - 1, carried at place p - 1.
"""

import dataclasses

import numpy as np

from bert_jax.data.tf_cpu import tf


@dataclasses.dataclass(frozen=True)
class Fragment:
  start: int  # the token before a sentence: BART's <s>; T5's decoder start token (its encoder reads none)
  lead: bool  # the encoder's input begins with `start` (BART) rather than with the sentence (T5)
  eos: int
  mask: int
  replacements: tf.Tensor  # int32: the ids a random token is drawn from
  ratio: float = 0.5  # the release's word_mass
  at_first: float = 0.2
  at_last: float = 0.2
  mask_fraction: float = 0.8
  random_fraction: float = 0.1


def fragment_length(framed_length, ratio: float):
  """The release's round(l x word_mass) tokens of a sentence of l tokens framed </s> ... </s> (half to even, as
  Python's round), kept within 1 .. l - 1; numpy or tf integers."""
  if isinstance(framed_length, tf.Tensor):
    rounded = tf.cast(tf.round(tf.cast(framed_length, tf.float64) * ratio), tf.int32)
    return tf.clip_by_value(rounded, 1, framed_length - 1)
  rounded = np.round(np.asarray(framed_length, np.float64) * ratio).astype(np.int64)
  return np.clip(rounded, 1, np.asarray(framed_length) - 1)


def sentences(documents: tf.data.Dataset, max_tokens: int) -> tf.data.Dataset:
  """Each document's sentences, one int32 [n] element each; a sentence longer than max_tokens is cut into pieces of
  max_tokens (the last shorter)."""

  @tf.autograph.experimental.do_not_convert
  def cut(document):
    lengths_S = tf.cast(document["sentence_lengths"], tf.int32)
    lengths_S = lengths_S[:tf.math.count_nonzero(lengths_S, dtype=tf.int32)]
    k = tf.ragged.range((lengths_S + max_tokens - 1) // max_tokens)
    pieces_P = tf.minimum(max_tokens, tf.gather(lengths_S, k.value_rowids()) - k.flat_values * max_tokens)
    tokens = tf.cast(document["token_ids"][:tf.reduce_sum(pieces_P)], tf.int32)
    return tf.data.Dataset.from_tensor_slices(tf.RaggedTensor.from_row_lengths(tokens, pieces_P))

  return documents.flat_map(cut)


def _fold(seed: tf.Tensor, data: int) -> tf.Tensor:
  return tf.random.experimental.stateless_fold_in(seed, tf.constant(data, tf.int64))


def choose_start(framed_length: tf.Tensor, length: tf.Tensor, f: Fragment, seed: tf.Tensor) -> tf.Tensor:
  """The fragment's first place (1 .. l - length + 1) as the release's shuffle_segments puts it: at 1 with
  probability at_first, last with at_last, else uniformly among all."""
  choices = framed_length - length
  draw = tf.random.stateless_uniform([], _fold(seed, 0))
  anywhere = tf.random.stateless_uniform([], _fold(seed, 1), 0, choices, tf.int32)
  last = choices - 1
  offset = tf.where(draw >= 1 - f.at_first, 0, tf.where(draw >= 1 - f.at_first - f.at_last, last, anywhere))
  return offset + 1


def mask_fragment(tokens: tf.Tensor, f: Fragment, seed: tf.Tensor) -> dict:
  """One sentence's example: {"source": the encoder's input, the fragment 80/10/10 [MASK] / random / kept,
  "previous": the decoder's input, "places": its places, "target": the fragment}."""
  framed_length = tf.size(tokens) + 2
  length = fragment_length(framed_length, f.ratio)
  first = choose_start(framed_length, length, f, _fold(seed, 0))
  framed = tf.concat([[f.start], tokens, [f.eos]], 0)
  places = first - 1 + tf.range(length)
  target = framed[first:first + length]
  draw = tf.random.stateless_uniform([length], _fold(seed, 1))
  index = tf.random.stateless_uniform([length], _fold(seed, 2), 0, tf.shape(f.replacements)[0], tf.int32)
  shown = tf.where(draw < f.mask_fraction, f.mask,
                   tf.where(draw < f.mask_fraction + f.random_fraction, tf.gather(f.replacements, index), target))
  source = tf.tensor_scatter_nd_update(framed, (places + 1)[:, None], shown)
  return {"source": source if f.lead else source[1:], "previous": framed[first - 1:first - 1 + length],
          "places": places, "target": target}
