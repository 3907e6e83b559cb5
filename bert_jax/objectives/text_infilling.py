"""BART's pretraining noise of the paper's best model (Lewis et al. 2020, section 5; fairseq's
denoising_dataset.py with the bart_large flags: mask 0.3, mask_random 0.1, replace_length 1, span-poisson lengths
with lambda 3, permute_sentences 1.0, insert 0, rotate 0, whole words): the decoder rebuilds the text.

Blocks: each document's sentences, in order, gathered into blocks of at most data.seq_len - 2 tokens (a longer
sentence cut into pieces), never across documents (fairseq's complete_doc); a block becomes <s> block </s>, the
target. The source is the same block after:
  1. sentence permutation: the block's sentences in a uniformly random order;
  2. text infilling: ceil(0.3 x its words) words are masked (words: a piece that begins a word and the pieces that
     continue it; <s> and </s> are never masked), in spans whose lengths in words are drawn from Poisson(3) (fairseq
     truncates the distribution at the first p(k) < 1e-7) until their sum reaches that budget, the last span cut to
     meet it. Spans of length > 0 start at distinct word starts chosen uniformly; each becomes one token (<mask>, or
     with probability 0.1 a random token) and its other tokens are deleted (spans may overlap: they then merge).
     Each 0-length span inserts one token at a random place instead (10% of them, rounded up, random tokens).

Where this departs from fairseq: sentences are the corpus' sentences as prepared (fairseq splits at the "." token
of GPT-2's vocabulary); random tokens are drawn from the tokenizer's ordinary pieces (fairseq: any id but 0); the
span lengths are drawn 2 x budget + 16 at a time (fairseq draws again while short: the same lengths unless that
many cannot reach the budget); a source longer than data.seq_len (many insertions in a short block) keeps its
first data.seq_len - 1 tokens and </s>. Each block is one row (no packing), padded on the right.

Features of one row (L = data.seq_len), int32: input_ids, attention_mask (1 on real tokens), decoder_input_ids (the
target shifted right, starting with </s> as fairseq and transformers do), labels (the target), decoder_attention_mask.
Loss: the mean token cross-entropy over the targets.
"""

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np

from bert_jax.errors import UserError
from bert_jax.objectives import check_fits_positions, decoding, settings as settings_lib, summarize_tokens, token_scores

FEATURES = ("input_ids", "attention_mask", "decoder_input_ids", "labels", "decoder_attention_mask")


@dataclasses.dataclass(frozen=True)
class TextInfillingSettings(settings_lib.Settings):
  """config.objective of text_infilling; the defaults are BART-large's recipe (bert_jax.recipes.bart_config)."""
  mask_ratio: float = 0.3  # of the words; ceil(0.3 x words) masked
  random_ratio: float = 0.1  # a span's mask (and an insertion) is a random token instead
  poisson_lambda: float = 3.0  # span lengths in words; 0-length spans insert one mask
  permute_sentences: bool = True  # every block's sentences in a random order

  def check(self) -> None:
    settings_lib.check_interval(self, "mask_ratio", "(0, 1)")
    settings_lib.check_interval(self, "random_ratio", "[0, 1]")
    settings_lib.check_interval(self, "poisson_lambda", "(0, inf)")


class TextInfilling:
  FAMILIES: ClassVar[tuple[str, ...] | None] = ("bart",)
  SETTINGS: ClassVar[type[TextInfillingSettings]] = TextInfillingSettings
  settings: TextInfillingSettings  # config.objective, read in __init__

  def __init__(self, config: Any):
    self.config = config
    self.settings = settings_lib.from_config(self.SETTINGS, config.objective)
    self.seq_len = config.data.seq_len
    self.validate()

  def validate(self) -> None:
    """data.seq_len against the noise's framing and the model's positions (the settings' checks ran already)."""
    if self.seq_len < 4:
      raise UserError(f"data.seq_len={self.seq_len} is too short for text infilling; use at least 4 tokens")
    check_fits_positions(self.config)

  def feature_spec(self, batch_size: int) -> dict:
    return {name: ((batch_size, self.seq_len), np.int32) for name in FEATURES}

  def synthetic_batch(self, batch_size: int, rng: np.random.Generator) -> dict:
    """Full rows of random tokens; the source 80% as long as the target (30% of words masked in spans of 3)."""
    L, V, eos = self.seq_len, self.config.model.vocab_size, self.config.model.eos_token_id
    labels = rng.integers(4, V, (batch_size, L), dtype=np.int32)
    source_mask = (np.arange(L) < int(0.8 * L)).astype(np.int32)[None].repeat(batch_size, 0)
    return {"input_ids": rng.integers(4, V, (batch_size, L), dtype=np.int32) * source_mask,
            "attention_mask": source_mask,
            "decoder_input_ids": np.concatenate([np.full((batch_size, 1), eos, np.int32), labels[:, :-1]], 1),
            "labels": labels, "decoder_attention_mask": np.ones((batch_size, L), np.int32)}

  def noise(self, tokenizer):
    """The noise settings (text_infilling_data.Noise) with the tokenizer's ids."""
    from bert_jax.data.tf_cpu import tf
    from bert_jax.objectives import text_infilling_data

    o = self.settings
    special = tokenizer.special_mask()
    return text_infilling_data.Noise(
        bos=tokenizer.cls_id, eos=tokenizer.eos_id, mask=tokenizer.mask_id,
        word_start_V=tf.constant(tokenizer.word_starts()),
        replacements=tf.constant(np.flatnonzero(~special).astype(np.int32)), mask_ratio=float(o.mask_ratio),
        random_ratio=float(o.random_ratio), poisson_lambda=float(o.poisson_lambda),
        permute_sentences=bool(o.permute_sentences), max_length=self.seq_len)

  def dataset(self, documents, tokenizer, seed: int, train: bool):
    """Rows of features from tokenized documents; the noise differs wherever a block occurs in the stream."""
    from bert_jax.data.tf_cpu import tf
    from bert_jax.objectives import text_infilling_data

    model = self.config.model
    for role, found, name in (("EOS", tokenizer.eos_id, "eos_token_id"), ("padding", tokenizer.pad_id, "pad_token_id"),
                              ("BOS ([CLS] or <s>)", tokenizer.cls_id, "bos_token_id")):
      if found != model[name]:
        raise UserError(f"the tokenizer's {role} id is {found} but model.{name}={model[name]}; set "
                        f"--config.model.{name}={found}")
    noise = self.noise(tokenizer)
    L, pad = self.seq_len, tokenizer.pad_id

    @tf.autograph.experimental.do_not_convert
    def row(index, block):
      example = text_infilling_data.corrupt(block["tokens"], block["sentence_lengths"], noise,
                                  tf.stack([tf.cast(seed, tf.int64), index]))
      source, target = example["source"], example["target"]
      padded = lambda x, value: tf.pad(x, [[0, L - tf.size(x)]], constant_values=value)
      ones = lambda x: padded(tf.ones_like(x), 0)
      return {"input_ids": padded(source, pad), "attention_mask": ones(source),
              "decoder_input_ids": padded(tf.concat([[noise.eos], target[:-1]], 0), pad),
              "labels": padded(target, pad), "decoder_attention_mask": ones(target)}

    return text_infilling_data.blocks(documents, L - 2).enumerate().map(row, num_parallel_calls=tf.data.AUTOTUNE,
                                                               deterministic=True)

  def forward(self, model, params, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]:
    logits_BTV = model.apply({"params": params}, batch["input_ids"], batch["decoder_input_ids"],
                             batch["attention_mask"], batch["decoder_attention_mask"], rngs=rngs)
    logits_BTV = logits_BTV.astype(jnp.float32)
    targets_BT = batch["labels"]
    weights_BT = batch["decoder_attention_mask"].astype(jnp.float32)
    nll_BT, correct_BT = token_scores.nll_and_correct(logits_BTV, targets_BT)
    return {"targets": jnp.sum(nll_BT * weights_BT)}, {"targets_correct": jnp.sum(correct_BT * weights_BT)}

  def counts(self, batch: dict) -> dict:
    return {"targets": jnp.sum(batch["decoder_attention_mask"].astype(jnp.float32))}

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    return summarize_tokens("targets", sums, metrics, counts)

  def predict(self, model, params, tokenizer, texts: list[str], top_k: int) -> list[dict]:
    """Mask infilling (`bert-jax predict`): each text, a <mask> (or [MASK]) for each span to fill, framed <s> text </s>
    as the encoder's input; the greedy decode rewrites the whole text, as pretraining taught it (up to twice the
    longest input plus 16 tokens, within the model's positions; top_k plays no part)."""
    from bert_jax import models
    from bert_jax.objectives import blanks

    bos, eos = self.config.model.bos_token_id, self.config.model.eos_token_id
    limit = models.max_sequence_length(self.config.model)
    rows = []
    for i, text in enumerate(texts):
      ids = blanks.encode(tokenizer, text, blanks.MASK_MARKER, lambda _: tokenizer.mask_id, "<mask>", i)[0]
      rows.append([bos, *ids, eos])
      blanks.check_length(len(rows[-1]), limit, text, i)
    tokens_BL, mask_BL = blanks.pad(rows, self.config.model.pad_token_id)
    length = min(limit, 2 * tokens_BL.shape[1] + 16)
    decoded_BT = np.asarray(decoding.greedy_decode(model, params, tokens_BL, mask_BL, length, eos, start_id=eos))
    records = []
    for text, row, decoded_T in zip(texts, rows, decoded_BT):
      rewrite = [int(t) for t in decoded_T]
      rewrite = rewrite[:rewrite.index(eos)] if eos in rewrite else rewrite
      rewrite = rewrite[1:] if rewrite[:1] == [bos] else rewrite
      records.append(blanks.fill_rewritten(text, tokenizer, row[1:-1], rewrite, tokenizer.mask_id))
    return records
