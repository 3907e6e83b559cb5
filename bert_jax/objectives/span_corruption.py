"""T5's span corruption: noise spans become sentinels in the inputs; the targets spell them out.

Raw text is concatenated across documents and cut into chunks of `lengths(...)[0]` tokens, so a chunk
fills the encoder input (data.seq_len) exactly. In a chunk of n tokens, round(n * noise_density)
tokens (clipped to [1, n - 1]) are noise, in round(noise / mean_noise_span_length) spans (at least
1); a random segmentation splits noise and non-noise tokens into that many spans each, interleaved
starting with non-noise. Inputs: every noise span replaced by one sentinel, then EOS. Targets: each
sentinel followed by the span it replaced, then EOS. Sentinels count down from <extra_id_0>, the
tokenizer's highest id.

Features of one row (Li = data.seq_len, Lt = objective.targets_length): encoder_input_tokens [Li],
encoder_segment_ids [Li], decoder_target_tokens [Lt], decoder_segment_ids [Lt], decoder_positions [Lt],
all int32. Segment ids number the examples packed into a row from 1 (0 = padding); positions count
from 0 within each example. The decoder input is the target shifted right, restarting with the
start token (id 0) at every example's position 0.

Training loss per target token: the cross-entropy plus objective.z_loss * log(Z)^2, Z the softmax
normalizer (Mesh TensorFlow's and t5x's z-loss, 1e-4 in the T5 recipes). Reported apart as targets_loss
and z_loss; `loss` is their sum.
"""

import dataclasses
import itertools
from typing import Any, ClassVar, cast

import jax
import jax.numpy as jnp
import numpy as np

from bert_jax.errors import UserError
from bert_jax.objectives import decoding, settings as settings_lib, summarize_tokens, token_scores

FEATURES = ("encoder_input_tokens", "encoder_segment_ids", "decoder_target_tokens", "decoder_segment_ids",
            "decoder_positions")


def noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
  """(noise tokens, noise spans) of a chunk, computed in float32 exactly as the tf.data transform does."""
  noise = int(np.round(np.float32(length) * np.float32(noise_density)))
  noise = min(max(noise, 1), length - 1)
  spans = int(np.round(np.float32(noise) / np.float32(mean_noise_span_length)))
  return noise, max(spans, 1)


def example_lengths(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
  """(inputs, targets) lengths with EOS of a chunk of `length` raw tokens."""
  noise, spans = noise_counts(length, noise_density, mean_noise_span_length)
  return length - noise + spans + 1, noise + spans + 1


def lengths(inputs_length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
  """(raw chunk length, targets length): the longest chunk whose inputs fit in `inputs_length` tokens."""
  if inputs_length < 3:
    raise UserError(f"data.seq_len={inputs_length} is too short for span corruption; use at least 3 tokens")
  raw = inputs_length - 1  # its inputs hold at most raw + 1 tokens: it always fits
  while example_lengths(raw + 1, noise_density, mean_noise_span_length)[0] <= inputs_length:
    raw += 1
  return raw, example_lengths(raw, noise_density, mean_noise_span_length)[1]


@dataclasses.dataclass(frozen=True)
class Targets(settings_lib.Settings):
  """What the objectives that train T5's decoder share (span corruption, text to text): the decoder's length and
  the z-loss; z_loss's default is its fallback (off), T5's recipes set 1e-4."""
  targets_length: int = 114  # decoder length; span corruption: at least what `lengths` predicts for data.seq_len
  z_loss: float = 0.0  # + z_loss * log(Z)^2 per target token (Mesh TF, t5x); 0 turns it off

  def check(self) -> None:
    settings_lib.check_interval(self, "z_loss", "[0, inf)", " (0 turns it off; T5 uses 1e-4)")
    settings_lib.check_interval(self, "targets_length", "[2, inf)", integer=True)


@dataclasses.dataclass(frozen=True)
class SpanCorruptionSettings(Targets):
  """config.objective of span_corruption; the defaults are T5's recipe (bert_jax.recipes.t5_config) at its
  512 input tokens, z_loss's its fallback (off)."""
  noise_density: float = 0.15  # share of a chunk's tokens that are noise
  mean_noise_span_length: float = 3.0  # noise tokens per noise span, on average
  packing: bool = True  # several short examples per row, kept apart by segment ids

  def check(self) -> None:
    settings_lib.check_interval(self, "noise_density", "(0, 1)")
    settings_lib.check_interval(self, "mean_noise_span_length", "[1, inf)")
    super().check()


class SpanCorruption:
  FAMILIES: ClassVar[tuple[str, ...] | None] = ("t5",)
  SETTINGS: ClassVar[type[Targets]] = SpanCorruptionSettings  # Targets: TextToText, a subclass, has its own
  settings: Targets

  def __init__(self, config: Any):
    self.config = config
    # span corruption's own settings: TextToText, whose SETTINGS are another Targets, has an __init__ of its own
    self.settings = o = cast(SpanCorruptionSettings, settings_lib.from_config(self.SETTINGS, config.objective))
    self.packing = o.packing
    self.noise_density = float(o.noise_density)
    self.mean_noise_span_length = float(o.mean_noise_span_length)
    self.inputs_length = config.data.seq_len
    self.targets_length = o.targets_length
    self.z_loss = float(o.z_loss)
    self.raw_length, self.expected_targets_length = lengths(self.inputs_length, self.noise_density,
                                                            self.mean_noise_span_length)
    self.max_spans = noise_counts(self.raw_length, self.noise_density, self.mean_noise_span_length)[1]
    for length in range(2, self.raw_length + 1):
      noise, spans = noise_counts(length, self.noise_density, self.mean_noise_span_length)
      if length - noise < spans:
        raise UserError(f"noise_density={self.noise_density} leaves {length - noise} non-noise tokens for "
                        f"{spans} noise spans in {length}-token chunks; lower objective.noise_density or "
                        "raise objective.mean_noise_span_length")
    if config.data.extra_ids < self.max_spans:
      raise UserError(f"{self.raw_length}-token chunks have {self.max_spans} noise spans but data.extra_ids="
                      f"{config.data.extra_ids} sentinels; set --config.data.extra_ids={self.max_spans} or more (T5's "
                      "vocabulary has 100), or raise objective.mean_noise_span_length for fewer spans")
    if self.targets_length < self.expected_targets_length:
      raise UserError(
          f"objective.targets_length={self.targets_length} cannot hold the targets of {self.raw_length}-token "
          f"chunks at noise_density={self.noise_density} (data.seq_len={self.inputs_length} needs "
          f"{self.expected_targets_length}); set "
          f"--config.objective.targets_length={self.expected_targets_length}")

  def feature_spec(self, batch_size: int) -> dict:
    return {name: ((batch_size, self.inputs_length if name.startswith("encoder") else self.targets_length),
                   np.int32) for name in FEATURES}

  def synthetic_batch(self, batch_size: int, rng: np.random.Generator) -> dict:
    """Random tokens in full-length, unpacked rows: inputs data.seq_len long, targets as predicted."""
    n_tg, V = self.expected_targets_length, self.config.model.vocab_size
    targets_mask = (np.arange(self.targets_length) < n_tg).astype(np.int32)[None].repeat(batch_size, 0)
    return {"encoder_input_tokens": rng.integers(2, V, (batch_size, self.inputs_length), dtype=np.int32),
            "encoder_segment_ids": np.ones((batch_size, self.inputs_length), np.int32),
            "decoder_target_tokens": rng.integers(2, V, (batch_size, self.targets_length), dtype=np.int32)
                                     * targets_mask,
            "decoder_segment_ids": targets_mask,
            "decoder_positions": np.arange(self.targets_length, dtype=np.int32)[None] * targets_mask}

  def dataset(self, documents, tokenizer, seed: int, train: bool):
    """Rows of features from tokenized documents ({"token_ids": int32 [T], ...}, bert_jax.data.pipeline)."""
    if tokenizer.extra_ids < self.max_spans:
      raise UserError(f"tokenizer {tokenizer.path or '(in memory)'} has {tokenizer.extra_ids} <extra_id_N> "
                      f"sentinels; span corruption needs {self.max_spans}: load it with "
                      "--config.data.extra_ids=100, or leave data.tokenizer empty to train one with them")
    if tokenizer.eos_id != self.config.model.eos_token_id:
      raise UserError(f"the tokenizer's EOS id is {tokenizer.eos_id} but model.eos_token_id="
                      f"{self.config.model.eos_token_id}; set --config.model.eos_token_id={tokenizer.eos_id}")
    return self.rows(documents.map(_token_ids), tokenizer.sentinel_id(0), tokenizer.eos_id, seed)

  def rows(self, documents, first_sentinel: int, eos_id: int, seed: int):
    """Rows of features from a tf.data.Dataset of 1-D token ids."""
    from bert_jax.data.tf_cpu import tf
    from bert_jax.objectives import span_corruption_data

    @tf.autograph.experimental.do_not_convert
    def corrupt_chunk(index, tokens):
      return span_corruption_data.corrupt(tokens, self.noise_density, self.mean_noise_span_length, first_sentinel,
                                          eos_id, tf.stack([tf.cast(seed, tf.int64), index]))

    @tf.autograph.experimental.do_not_convert
    def padded_row(example):
      return span_corruption_data.padded_row(example, self.inputs_length, self.targets_length)

    examples = span_corruption_data.chunks(documents, self.raw_length).enumerate().map(corrupt_chunk)
    if self.packing:
      return span_corruption_data.pack(examples, self.inputs_length, self.targets_length)
    return examples.map(padded_row)

  def forward(self, model, params, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]:
    logits_BTV = model.apply({"params": params}, batch["encoder_input_tokens"], decoder_inputs(batch),
                             batch["encoder_segment_ids"], batch["decoder_segment_ids"], rngs=rngs)
    logits_BTV = logits_BTV.astype(jnp.float32)
    targets_BT = batch["decoder_target_tokens"]
    weights_BT = (batch["decoder_segment_ids"] > 0).astype(jnp.float32)
    nll_BT, correct_BT = token_scores.nll_and_correct(logits_BTV, targets_BT)
    sums = {"targets": jnp.sum(nll_BT * weights_BT)}
    if self.z_loss:  # Mesh TF / t5x: z_loss * log(Z)^2 keeps the softmax normalizer near 1
      log_z_BT = jax.nn.logsumexp(logits_BTV, axis=-1)
      sums["z_loss"] = self.z_loss * jnp.sum(jnp.square(log_z_BT) * weights_BT)
    return sums, {"targets_correct": jnp.sum(correct_BT * weights_BT)}

  def counts(self, batch: dict) -> dict:
    tokens = jnp.sum((batch["decoder_segment_ids"] > 0).astype(jnp.float32))
    return {"targets": tokens, "z_loss": tokens} if self.z_loss else {"targets": tokens}

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    """`loss` is what training minimizes (cross-entropy + z-loss); targets_loss the cross-entropy alone."""
    result = summarize_tokens("targets", sums, metrics, counts)
    if "z_loss" in sums:
      result["z_loss"] = float(sums["z_loss"]) / max(float(counts["z_loss"]), 1.0)
    return result

  def greedy_decode(self, model, params, batch: dict) -> jax.Array:
    """[B, targets_length] greedy predictions for the first example (segment 1) of each row."""
    first_BL = batch["encoder_segment_ids"] == 1
    return decoding.greedy_decode(model, params, jnp.where(first_BL, batch["encoder_input_tokens"], 0),
                          first_BL.astype(jnp.int32), self.targets_length, self.config.model.eos_token_id)

  def decode_examples(self, model, params, batch: dict, tokenizer, count: int = 4) -> list[dict]:
    """Inputs, targets and greedy prediction of the first example of `count` rows as text (sentinels written
    <extra_id_N>), for a person to read what the model fills in."""
    rows = {k: np.asarray(v)[:count] for k, v in batch.items()}
    predicted = np.asarray(self.greedy_decode(model, params, rows))
    eos = self.config.model.eos_token_id

    def text(ids) -> str:
      ids = [int(i) for i in ids if i != 0]
      ids = ids[:ids.index(eos)] if eos in ids else ids
      parts: list[str] = []
      for is_sentinel, run in itertools.groupby(ids, lambda i: i >= tokenizer.piece_count):
        group = list(run)
        parts += ([f"<extra_id_{tokenizer.vocab_size - 1 - i}>" for i in group] if is_sentinel
                  else [tokenizer.decode(group)])
      return " ".join(parts)

    inputs = [ids[seg == 1] for ids, seg in zip(rows["encoder_input_tokens"], rows["encoder_segment_ids"])]
    targets = [ids[seg == 1] for ids, seg in zip(rows["decoder_target_tokens"], rows["decoder_segment_ids"])]
    return [{"inputs": text(inputs[i]), "targets": text(targets[i]), "predicted": text(predicted[i])}
            for i in range(len(predicted))]

  eval_extras = decode_examples  # what `bert-jax evaluate` writes beside the metrics

  def predict(self, model, params, tokenizer, texts: list[str], top_k: int) -> list[dict]:
    """Span infilling (`bert-jax predict`): each text with <extra_id_N> sentinels, then EOS, as the encoder's input;
    the greedy decode of up to objective.targets_length tokens spells out the spans (top_k plays no part)."""
    from bert_jax.objectives import blanks

    def sentinel(match) -> int:
      index = int(match.group(1))
      if index >= tokenizer.extra_ids:
        have = f"<extra_id_0> to <extra_id_{tokenizer.extra_ids - 1}>" if tokenizer.extra_ids else "none"
        raise UserError(f"{match.group(0)} is not a sentinel of this tokenizer (it has {have}; "
                        "data.extra_ids sets how many)")
      return tokenizer.sentinel_id(index)

    rows = [blanks.encode(tokenizer, text, blanks.SENTINEL_MARKER, sentinel, "<extra_id_0>", i)[0]
            + [tokenizer.eos_id] for i, text in enumerate(texts)]
    tokens_BL, segments_BL = blanks.pad(rows, self.config.model.pad_token_id)
    eos = self.config.model.eos_token_id
    decoded_BT = np.asarray(decoding.greedy_decode(model, params, tokens_BL, segments_BL, self.targets_length, eos))
    return [blanks.fill_spans(text, tokenizer, decoded_T, eos) for text, decoded_T in zip(texts, decoded_BT)]


def _token_ids(document: dict):
  """The document's ids (a tf.data map function, kept out of autograph's reach)."""
  return document["token_ids"]


def decoder_inputs(batch: dict) -> jax.Array:
  """The targets shifted right within each packed example, starting with the start token 0."""
  targets_BT = batch["decoder_target_tokens"]
  shifted_BT = jnp.pad(targets_BT, ((0, 0), (1, 0)))[:, :-1]
  return jnp.where(batch["decoder_positions"] == 0, 0, shifted_BT)
