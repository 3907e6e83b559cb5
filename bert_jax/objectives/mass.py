"""MASS (Song et al. 2019, "MASS: Masked Sequence to Sequence Pre-training for Language Generation"; microsoft/MASS,
MASS/src/trainer.py restricted_mask_sent and mass_step, run with word_mass 0.5 and word_mask_keep_rand 0.8,0.1,0.1):
the encoder reads a sentence with one contiguous fragment of about half of it masked, and the decoder writes the
fragment, fed the fragment's previous tokens at their places in the sentence (the sentence's other tokens are not
its input at all, which is the paper's "masked" decoder inputs), predicting only the fragment.

Rows: each document's sentences as prepared, one a row (a sentence longer than data.seq_len - 2 tokens is cut into
pieces of that length), framed as the family frames a text: BART <s> sentence </s>, T5 sentence </s>. The release
counts a sentence's places in </s> sentence </s>, l = n + 2 for n tokens:
  1. the fragment has k = round(0.5 x l) tokens (Python's round, half to even; at least 1, at most l - 1), so it may
     end with the closing </s>;
  2. it starts at place 1 with probability 0.2, ends at place l - 1 with probability 0.2, and otherwise starts
     uniformly at one of the l - k places that fit (all of them: the first and last again among them);
  3. the encoder sees each fragment token as [MASK] (80%), a random token (10%) or itself (10%);
  4. the decoder's input at fragment place p is the token at p - 1 (<s> before the first token; T5's decoder start
     token), carried at place p - 1 (BART's learned positions read these places; T5's relative biases see only
     distances, which the contiguous fragment keeps as they are in the sentence); its cross-attention skips the
     encoder places that show [MASK], as the release's enc_mask;
  5. the loss is the mean token cross-entropy over the fragment.

Where this departs from the release: sentences are the corpus' as prepared (the release: one per line, 5 to 100
tokens), and a long one is cut rather than dropped; the fragment's length comes from each sentence's own length (the
release takes its batch's longest, so the two agree where a batch's sentences are of one length, as the port in
tests/original_ports.py assumes); random tokens are drawn from the tokenizer's ordinary pieces (the release: any id);
BART frames a sentence with <s> first (the release: </s>); there is no language embedding (the release adds one per
language) and the output layer has no bias.

Features of one row (L = data.seq_len, T = the longest fragment a row of L tokens has), int32: input_ids,
attention_mask (1 on real tokens), cross_attention_mask (real tokens not shown as [MASK]), decoder_input_ids,
decoder_positions, labels (the fragment), decoder_attention_mask [T].
"""

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from bert_jax.errors import UserError
from bert_jax.objectives import check_fits_positions, settings as settings_lib, summarize_tokens, token_scores
from bert_jax.objectives.mass_data import fragment_length

SOURCE_FEATURES = ("input_ids", "attention_mask", "cross_attention_mask")
TARGET_FEATURES = ("decoder_input_ids", "decoder_positions", "labels", "decoder_attention_mask")


@dataclasses.dataclass(frozen=True)
class MassSettings(settings_lib.Settings):
  """config.objective of mass; the defaults are the release's flags (bert_jax.recipes.mass_config)."""
  fragment_ratio: float = 0.5  # the release's word_mass: the fragment's share of a sentence
  start_at_first: float = 0.2  # the fragment starts with the sentence's first token
  start_at_last: float = 0.2  # the fragment ends with the sentence's </s>
  mask_token_fraction: float = 0.8  # of the fragment's tokens the encoder sees as [MASK]
  random_token_fraction: float = 0.1  # as a random token; the rest as they are

  def check(self) -> None:
    settings_lib.check_interval(self, "fragment_ratio", "(0, 1)")
    settings_lib.check_interval(self, "start_at_first", "[0, 1]")
    settings_lib.check_interval(self, "start_at_last", "[0, 1]")
    if self.start_at_first + self.start_at_last > 1:
      raise UserError(f"objective.start_at_first + objective.start_at_last must be at most 1, got "
                      f"{self.start_at_first} + {self.start_at_last}")
    settings_lib.check_token_fractions(self)


class Mass:
  FAMILIES: ClassVar[tuple[str, ...] | None] = ("bart", "t5")
  SETTINGS: ClassVar[type[MassSettings]] = MassSettings
  settings: MassSettings  # config.objective, read in __init__

  def __init__(self, config: Any):
    self.config = config
    self.settings = settings_lib.from_config(self.SETTINGS, config.objective)
    self.seq_len = config.data.seq_len
    if self.seq_len < 4:
      raise UserError(f"data.seq_len={self.seq_len} is too short for MASS; use at least 4 tokens")
    check_fits_positions(config)
    self.targets_length = int(fragment_length(np.arange(3, self.seq_len + 1), self.settings.fragment_ratio).max())
    model = config.model
    # BART's <s> begins every text, and is the token before a sentence's first; T5 reads none and starts its decoder
    # from its pad id
    self.bos = model.get("bos_token_id", None)
    self.start = model.pad_token_id if self.bos is None else self.bos

  def feature_spec(self, batch_size: int) -> dict:
    spec = {name: ((batch_size, self.seq_len), np.int32) for name in SOURCE_FEATURES}
    return spec | {name: ((batch_size, self.targets_length), np.int32) for name in TARGET_FEATURES}

  def synthetic_batch(self, batch_size: int, rng: np.random.Generator) -> dict:
    """Full rows of random tokens whose middle T tokens are the fragment, shown as [MASK] (id 4 here)."""
    L, T, V = self.seq_len, self.targets_length, self.config.model.vocab_size
    first = (L - T) // 2
    tokens = rng.integers(5, V, (batch_size, L), dtype=np.int32)
    source = tokens.copy()
    source[:, first:first + T] = 4
    ones = lambda n: np.ones((batch_size, n), np.int32)
    return {"input_ids": source, "attention_mask": ones(L), "cross_attention_mask": (source != 4).astype(np.int32),
            "decoder_input_ids": tokens[:, first - 1:first + T - 1], "labels": tokens[:, first:first + T],
            "decoder_positions": np.broadcast_to(np.arange(first - 1, first + T - 1, dtype=np.int32), (batch_size, T)),
            "decoder_attention_mask": ones(T)}

  def fragment(self, tokenizer):
    """The fragment settings (mass_data.Fragment) with the tokenizer's ids."""
    from bert_jax.data.tf_cpu import tf
    from bert_jax.objectives import mass_data

    o = self.settings
    return mass_data.Fragment(
        start=self.start, lead=self.bos is not None, eos=tokenizer.eos_id, mask=tokenizer.mask_id,
        replacements=tf.constant(np.flatnonzero(~tokenizer.special_mask()).astype(np.int32)),
        ratio=float(o.fragment_ratio), at_first=float(o.start_at_first), at_last=float(o.start_at_last),
        mask_fraction=float(o.mask_token_fraction), random_fraction=float(o.random_token_fraction))

  def check_tokenizer(self, tokenizer) -> None:
    """The tokenizer's special ids are the model's."""
    model = self.config.model
    roles = (("EOS", tokenizer.eos_id, "eos_token_id"), ("padding", tokenizer.pad_id, "pad_token_id"),
             ("BOS ([CLS] or <s>)", tokenizer.cls_id if self.bos is not None else None, "bos_token_id"))
    for role, found, name in roles:
      if found is not None and found != model[name]:
        raise UserError(f"the tokenizer's {role} id is {found} but model.{name}={model[name]}; set "
                        f"--config.model.{name}={found}")

  def dataset(self, documents, tokenizer, seed: int, train: bool):
    """Rows of features from tokenized documents; the fragment differs wherever a sentence occurs in the stream."""
    from bert_jax.data.tf_cpu import tf
    from bert_jax.objectives import mass_data

    self.check_tokenizer(tokenizer)
    fragment = self.fragment(tokenizer)
    L, T, pad = self.seq_len, self.targets_length, tokenizer.pad_id

    @tf.autograph.experimental.do_not_convert
    def row(index, tokens):
      example = mass_data.mask_fragment(tokens, fragment, tf.stack([tf.cast(seed, tf.int64), index]))
      source = example["source"]
      padded = lambda x, n, value=0: tf.pad(x, [[0, n - tf.size(x)]], constant_values=value)
      ones = lambda x, n: padded(tf.ones_like(x), n)
      return {"input_ids": padded(source, L, pad), "attention_mask": ones(source, L),
              "cross_attention_mask": padded(tf.cast(source != fragment.mask, tf.int32), L),
              "decoder_input_ids": padded(example["previous"], T, pad),
              "decoder_positions": padded(example["places"], T), "labels": padded(example["target"], T, pad),
              "decoder_attention_mask": ones(example["target"], T)}

    return mass_data.sentences(documents, L - 2).enumerate().map(row, num_parallel_calls=tf.data.AUTOTUNE,
                                                                 deterministic=True)

  def forward(self, model, params, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]:
    def run(module):
      encoded_BLD = module.encode(batch["input_ids"], batch["attention_mask"])
      return module.decode(encoded_BLD, batch["decoder_input_ids"], batch["cross_attention_mask"],
                           batch["decoder_attention_mask"], batch["decoder_positions"])

    logits_BTV = model.apply({"params": params}, method=run, rngs=rngs).astype(jnp.float32)
    weights_BT = batch["decoder_attention_mask"].astype(jnp.float32)
    nll_BT, correct_BT = token_scores.nll_and_correct(logits_BTV, batch["labels"])
    return {"fragment": jnp.sum(nll_BT * weights_BT)}, {"fragment_correct": jnp.sum(correct_BT * weights_BT)}

  def counts(self, batch: dict) -> dict:
    return {"fragment": jnp.sum(batch["decoder_attention_mask"].astype(jnp.float32))}

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    return summarize_tokens("fragment", sums, metrics, counts)

  def predict(self, model, params, tokenizer, texts: list[str], top_k: int) -> list[dict]:
    """The decoder writes each masked fragment (`bert-jax predict`): a run of [MASK] (or <mask>) in a text is one
    fragment of as many tokens; a text without one has its middle fragment masked as in pretraining (round(0.5 x
    (tokens + 2)) tokens, centred). Greedy, one token per [MASK]; top_k plays no part."""
    from bert_jax import models
    from bert_jax.objectives import blanks

    limit = models.max_sequence_length(self.config.model)
    lead = [self.start] if self.bos is not None else []
    eos, mask = self.config.model.eos_token_id, tokenizer.mask_id
    examples = [self.mask_text(tokenizer, text, i) for i, text in enumerate(texts)]
    rows, previous, firsts = [], [], []  # one decoding row per fragment
    for i, (ids, runs, _) in enumerate(examples):
      blanks.check_length(len(lead) + len(ids) + 1, limit, texts[i], i)
      for first, _ in runs:
        rows.append(lead + ids + [eos])
        previous.append(([self.start] + ids)[first])
        firsts.append(first)
    source_RL, mask_RL = blanks.pad(rows, self.config.model.pad_token_id)
    longest = max(length for _, runs, _ in examples for _, length in runs)
    places_RT = np.array(firsts, np.int32)[:, None] + np.arange(longest, dtype=np.int32)
    if limit is not None:
      places_RT = np.minimum(places_RT, limit - 1)  # places past a fragment's end are never read back
    written_RT = np.asarray(_greedy(model, params, source_RL, mask_RL, (source_RL != mask) * mask_RL,
                                    np.array(previous, np.int32), places_RT))
    records, r = [], 0
    for text, (ids, runs, hidden) in zip(texts, examples):
      output, cursor, predictions = [], 0, []
      for (first, length), name in zip(runs, hidden):
        fill = [int(t) for t in written_RT[r, :length] if t != eos]
        output += ids[cursor:first] + fill
        cursor = first + length
        predictions.append({"blank": name, "text": tokenizer.decode(fill).strip()})
        r += 1
      output += ids[cursor:]
      records.append({"input": text, "output": tokenizer.decode(output).strip(), "predictions": predictions})
    return records

  def mask_text(self, tokenizer, text: str, index: int) -> tuple[list[int], list[tuple[int, int]], list[str]]:
    """(the text's ids with every fragment [MASK], the fragments as (first index, length), what each hid: the
    [MASK]s as written, or the middle fragment's original text)."""
    from bert_jax.objectives import blanks

    mask = tokenizer.mask_id
    if blanks.MASK_MARKER.search(text):
      ids, places, names = blanks.encode(tokenizer, text, blanks.MASK_MARKER, lambda _: mask, "[MASK]", index)
      runs: list[tuple[int, int]] = []
      hidden: list[str] = []
      for place, name in zip(places, names):
        if runs and runs[-1][0] + runs[-1][1] == place:
          runs[-1] = (runs[-1][0], runs[-1][1] + 1)
          hidden[-1] += " " + name
        else:
          runs.append((place, 1))
          hidden.append(name)
      return ids, runs, hidden
    ids = list(tokenizer.encode([text])[0])
    if not ids:
      raise UserError(f"input {index + 1} is empty; write a text, with [MASK] where the model should fill in")
    length = min(int(fragment_length(len(ids) + 2, self.settings.fragment_ratio)), len(ids))
    first = (len(ids) - length) // 2
    hidden_text = tokenizer.decode(ids[first:first + length]).strip()
    return ids[:first] + [mask] * length + ids[first + length:], [(first, length)], [hidden_text]


def _greedy(model, params, source_RL, mask_RL, cross_RL, previous_R, places_RT):
  """[R, T] tokens the decoder writes greedily after previous_R, at places_RT, over the encoded sources."""
  def run(params, source_RL, mask_RL, cross_RL, previous_R, places_RT):
    variables = {"params": params}
    encoded_RLD = model.apply(variables, source_RL, mask_RL, method="encode")
    length = places_RT.shape[1]

    def step(t, state):
      inputs_RT, out_RT = state
      logits_RTV = model.apply(variables, encoded_RLD, inputs_RT, cross_RL, jnp.ones_like(inputs_RT), places_RT,
                               method="decode")
      token_R = jnp.argmax(logits_RTV[:, t], -1).astype(jnp.int32)
      return inputs_RT.at[:, t + 1].set(token_R, mode="drop"), out_RT.at[:, t].set(token_R)

    start_RT = jnp.zeros(places_RT.shape, jnp.int32).at[:, 0].set(previous_R)
    return jax.lax.fori_loop(0, length, step, (start_RT, jnp.zeros_like(start_RT)))[1]

  return jax.jit(run)(params, source_RL, mask_RL, cross_RL, previous_R, places_RT)
