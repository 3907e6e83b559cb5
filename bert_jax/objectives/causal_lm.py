"""Causal language modelling (GPT-2): every token predicts the next, on documents packed end to end.

Documents are concatenated with the tokenizer's end-of-text id after each (<|endoftext|>, else <eod> or </s>:
tokenizer.eod_id), 128 documents at a time (span_corruption_data.chunks), and cut into windows of data.seq_len + 1
tokens; the last, shorter window of a group is dropped. A window gives input_ids = its first L tokens and target_ids =
its last L (L = data.seq_len), so each of the L positions has a target. Attention runs across the document boundaries
inside a window and positions count on from the window's start, as GPT-2's and nanoGPT's packing do; the
end-of-text token tells the model where a document ends. The transform draws nothing at random: the seed plays no
part, the pipeline's shuffling of documents and windows is what changes between epochs.

Features of one example: input_ids [L] int32, target_ids [L] int32. Loss: mean next-token cross-entropy over all
positions; metrics lm_loss, lm_accuracy, lm_perplexity (exp of the mean loss).

`predict` writes objective.max_new_tokens tokens after each text with the KV cache (`decoding.generate`): greedy when
objective.temperature is 0, else sampled from softmax(logits / temperature) cut to the top_k tokens (predict's
--top-k) and to the nucleus of mass objective.top_p (Holtzman et al. 2020), keyed by objective.seed. Texts of one
call are left-padded to one batch; generation stops at the end-of-text id.
"""

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np

from bert_jax import models
from bert_jax.errors import UserError
from bert_jax.models import gpt2
from bert_jax.objectives import check_fits_positions, decoding, settings as settings_lib, summarize_tokens, token_scores

CONTINUATION = "continuation"  # the `blank` of a predict record


@dataclasses.dataclass(frozen=True)
class CausalLMSettings(settings_lib.Settings):
  """config.objective of causal_lm: only `bert-jax predict` reads it (training has nothing to set); the defaults
  are GPT-2's recipe (bert_jax.recipes.gpt2_config)."""
  max_new_tokens: int = 32  # tokens written after each text
  temperature: float = 0.0  # 0: greedy; > 0: sample from softmax(logits / temperature) (--top-k, top_p cut it)
  top_p: float = 1.0  # nucleus sampling: the fewest tokens whose probability reaches top_p (1.0: all)
  seed: int = 0  # sampling's random key

  def check(self) -> None:
    settings_lib.check_positive(self, "max_new_tokens")
    settings_lib.check_interval(self, "temperature", "[0, inf)", " (0: greedy)")
    settings_lib.check_interval(self, "top_p", "(0, 1]")


class CausalLM:
  FAMILIES: ClassVar[tuple[str, ...] | None] = ("gpt2",)
  SETTINGS: ClassVar[type[CausalLMSettings]] = CausalLMSettings
  settings: CausalLMSettings  # config.objective, read in __init__

  def __init__(self, config: Any):
    self.config = config
    self.settings = settings_lib.from_config(self.SETTINGS, config.objective)
    self.seq_len = config.data.seq_len
    self.validate()

  def validate(self) -> None:
    """data.seq_len against the model's positions (the settings' own checks ran already)."""
    if self.seq_len < 1:
      raise UserError(f"data.seq_len must be positive, got {self.seq_len}")
    check_fits_positions(self.config)

  def feature_spec(self, batch_size: int) -> dict:
    return {"input_ids": ((batch_size, self.seq_len), np.int32), "target_ids": ((batch_size, self.seq_len), np.int32)}

  def synthetic_batch(self, batch_size: int, rng: np.random.Generator) -> dict:
    tokens = rng.integers(0, self.config.model.vocab_size, (batch_size, self.seq_len + 1), dtype=np.int32)
    return {"input_ids": tokens[:, :-1], "target_ids": tokens[:, 1:]}

  def dataset(self, documents, tokenizer, seed: int, train: bool):
    """Windows of features (feature_spec without the batch axis) from tokenized documents."""
    return self.windows(documents.map(_with_end_of_text(tokenizer.eod_id)))

  def windows(self, token_ids):
    """Features from a tf.data.Dataset of 1-D token ids, each document already ending in its end-of-text id."""
    from bert_jax.data.tf_cpu import tf
    from bert_jax.objectives import span_corruption_data

    window = self.seq_len + 1

    @tf.autograph.experimental.do_not_convert
    def full(tokens):
      return tf.size(tokens) == window

    @tf.autograph.experimental.do_not_convert
    def features(tokens):
      tokens = tf.ensure_shape(tokens, [window])
      return {"input_ids": tokens[:-1], "target_ids": tokens[1:]}

    return span_corruption_data.chunks(token_ids, window).filter(full).map(features)

  def forward(self, model, params, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]:
    logits_BLV = model.apply({"params": params}, batch["input_ids"], rngs=rngs).astype(jnp.float32)
    targets_BL = batch["target_ids"]
    nll_BL, correct_BL = token_scores.nll_and_correct(logits_BLV, targets_BL)
    return {"lm": jnp.sum(nll_BL)}, {"lm_correct": jnp.sum(correct_BL)}

  def counts(self, batch: dict) -> dict:
    return {"lm": jnp.asarray(batch["target_ids"].size, jnp.float32)}

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    return summarize_tokens("lm", sums, metrics, counts)

  def predict(self, model, params, tokenizer, texts: list[str], top_k: int) -> list[dict]:
    """Text generation (`bert-jax predict`): each text's continuation (see the module docstring)."""
    o = self.settings
    prompts = [list(tokenizer.encode([text])[0]) for text in texts]
    for i, (text, prompt) in enumerate(zip(texts, prompts)):
      if not prompt:
        raise UserError(f"input {i + 1} ({text!r}) has no tokens to continue; give some text")
    limit = models.max_sequence_length(self.config.model)
    longest = max(len(p) for p in prompts)
    if limit is not None and longest + o.max_new_tokens > limit:
      raise UserError(f"the longest input is {longest} tokens; with objective.max_new_tokens={o.max_new_tokens} that "
                      f"is more than the model's {limit} positions: shorten it or lower max_new_tokens")
    unscanned_model = self.config.model.copy_and_resolve_references()
    unscanned_model.update(scan_layers=False, remat="none")  # the KV cache runs the unscanned layers
    module = models.family(self.config.model)
    unscanned = module.to_layout(params, module.make_config(self.config.model), scanned=False)
    lm = models.build_model(unscanned_model)
    assert isinstance(lm, gpt2.GPT2)  # causal_lm trains GPT-2's pretraining model (FAMILIES)
    tokens_BT, _ = decoding.generate(lm, unscanned, prompts, o.max_new_tokens, tokenizer.eod_id, o.temperature, top_k,
                                     o.top_p, o.seed, self.config.model.get("pad_token_id", 0))
    records = []
    for text, tokens_T in zip(texts, np.asarray(tokens_BT)):
      tokens = [int(t) for t in tokens_T]
      tokens = tokens[:tokens.index(tokenizer.eod_id)] if tokenizer.eod_id in tokens else tokens
      written = tokenizer.decode(tokens)
      records.append({"input": text, "output": text + written,
                      "predictions": [{"blank": CONTINUATION, "text": written, "ids": tokens}]})
    return records


def _with_end_of_text(eod_id: int):
  from bert_jax.data.tf_cpu import tf

  @tf.autograph.experimental.do_not_convert
  def append(document):
    return tf.concat([tf.cast(document["token_ids"], tf.int32), tf.constant([eod_id], tf.int32)], 0)

  return append
