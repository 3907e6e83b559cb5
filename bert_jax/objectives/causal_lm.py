"""Causal language modelling (GPT-2): every token predicts the next, on documents packed end to end.

Documents are concatenated with the tokenizer's end-of-text id after each (<|endoftext|>, else <eod> or </s>:
tokenizer.eod_id), 128 documents at a time (spans.chunks), and cut into windows of data.seq_len + 1 tokens; the
last, shorter window of a group is dropped. A window gives input_ids = its first L tokens and target_ids = its
last L (L = data.seq_len), so each of the L positions has a target. Attention runs across the document boundaries
inside a window and positions count on from the window's start, as GPT-2's and nanoGPT's packing do; the
end-of-text token tells the model where a document ends. The transform draws nothing at random: the seed plays no
part, the pipeline's shuffling of documents and windows is what changes between epochs.

Features of one example: input_ids [L] int32, target_ids [L] int32. Loss: mean next-token cross-entropy over all
positions; metrics lm_loss, lm_accuracy, lm_perplexity (exp of the mean loss).

`predict` writes objective.max_new_tokens tokens after each text with the KV cache (`generate`): greedy when
objective.temperature is 0, else sampled from softmax(logits / temperature) cut to the top_k tokens (predict's
--top-k) and to the nucleus of mass objective.top_p (Holtzman et al. 2020), keyed by objective.seed. Texts of one
call are left-padded to one batch; generation stops at the end-of-text id.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bert_jax import models
from bert_jax.errors import UserError
from bert_jax.models import gpt2
from bert_jax.objectives import check_fits_positions, summarize_tokens, token_scores

CONTINUATION = "continuation"  # the `blank` of a predict record


class CausalLM:
  FAMILIES = ("gpt2",)

  def __init__(self, config: Any):
    self.config = config
    self.seq_len = config.data.seq_len
    self.validate()

  def validate(self) -> None:
    o = self.config.objective
    if self.seq_len < 1:
      raise UserError(f"data.seq_len must be positive, got {self.seq_len}")
    check_fits_positions(self.config)
    if o.get("max_new_tokens", 1) < 1 or o.get("temperature", 0.0) < 0 or not 0 < o.get("top_p", 1.0) <= 1:
      raise UserError("objective.max_new_tokens must be >= 1, objective.temperature >= 0 (0: greedy) and "
                      "objective.top_p in (0, 1]")

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
    from bert_jax.objectives import spans

    window = self.seq_len + 1

    @tf.autograph.experimental.do_not_convert
    def full(tokens):
      return tf.size(tokens) == window

    @tf.autograph.experimental.do_not_convert
    def features(tokens):
      tokens = tf.ensure_shape(tokens, [window])
      return {"input_ids": tokens[:-1], "target_ids": tokens[1:]}

    return spans.chunks(token_ids, window).filter(full).map(features)

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
    o = self.config.objective
    prompts = [list(tokenizer.encode([text])[0]) for text in texts]
    for i, (text, prompt) in enumerate(zip(texts, prompts)):
      if not prompt:
        raise UserError(f"input {i + 1} ({text!r}) has no tokens to continue; give some text")
    limit = models.max_sequence_length(self.config.model)
    longest = max(len(p) for p in prompts)
    if longest + o.max_new_tokens > limit:
      raise UserError(f"the longest input is {longest} tokens; with objective.max_new_tokens={o.max_new_tokens} that "
                      f"is more than the model's {limit} positions: shorten it or lower max_new_tokens")
    decoding = self.config.model.copy_and_resolve_references()
    decoding.update(scan_layers=False, remat="none")  # the KV cache runs the unscanned layers
    module = models.family(self.config.model)
    unscanned = module.to_layout(params, module.make_config(self.config.model), scanned=False)
    tokens_BT, _ = generate(models.build_model(decoding), unscanned, prompts, o.max_new_tokens, tokenizer.eod_id,
                            o.temperature, top_k, o.top_p, o.seed, self.config.model.get("pad_token_id", 0))
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


def choose(logits_BV: jax.Array, key: jax.Array, temperature: float, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """[B] next tokens: the argmax when temperature is 0; else a sample of softmax(logits / temperature) among the
  top_k most likely (0: all) and within the smallest set whose probability reaches top_p."""
  if temperature == 0:
    return jnp.argmax(logits_BV, -1).astype(jnp.int32)
  logits_BV = logits_BV.astype(jnp.float32) / temperature
  if 0 < top_k < logits_BV.shape[-1]:
    kth_B1 = jax.lax.top_k(logits_BV, top_k)[0][:, -1:]
    logits_BV = jnp.where(logits_BV < kth_B1, -jnp.inf, logits_BV)
  if top_p < 1.0:
    sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
    probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
    before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV  # mass of the more likely tokens
    kept_BV = before_BV < top_p  # the first token always stays
    threshold_B1 = jnp.min(jnp.where(kept_BV, sorted_BV, jnp.inf), axis=-1, keepdims=True)
    logits_BV = jnp.where(logits_BV < threshold_B1, -jnp.inf, logits_BV)
  return jax.random.categorical(key, logits_BV, axis=-1).astype(jnp.int32)


def generate(model: gpt2.GPT2, params: Any, prompts: list[list[int]], max_new_tokens: int, eos_id: int,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
             pad_id: int = 0) -> tuple[jax.Array, jax.Array]:
  """([B, max_new_tokens] tokens written after each prompt, pad_id after eos_id; [B, max_new_tokens, vocab] the logits
  each was chosen from) with the KV cache of the unscanned `model`: the prompts left-padded into one batch, read in
  one call, then one token per step."""
  longest = max(len(p) for p in prompts)
  ids_BP = np.full((len(prompts), longest), pad_id, np.int32)
  mask_BP = np.zeros((len(prompts), longest), np.int32)
  for i, prompt in enumerate(prompts):
    ids_BP[i, longest - len(prompt):] = prompt
    mask_BP[i, longest - len(prompt):] = 1
  cache = gpt2.init_cache(model, len(prompts), longest + max_new_tokens)

  @jax.jit
  def run(params, cache, ids_BP, mask_BP):
    def forward(cache, ids_BT, mask_BT, positions_BT):
      logits_BTV, updated = model.apply({"params": params, "cache": cache}, ids_BT, mask_BT, positions_BT,
                                        decode=True, mutable=["cache"])
      return logits_BTV[:, -1].astype(jnp.float32), updated["cache"]

    positions_BP = jnp.maximum(jnp.cumsum(mask_BP, axis=1) - 1, 0)
    logits_BV, cache = forward(cache, ids_BP, mask_BP, positions_BP)

    def step(carry, key):
      cache, logits_BV, position_B, done_B = carry
      token_B = jnp.where(done_B, pad_id, choose(logits_BV, key, temperature, top_k, top_p))
      next_logits_BV, cache = forward(cache, token_B[:, None], jnp.ones_like(token_B)[:, None], position_B[:, None])
      return (cache, next_logits_BV, position_B + 1, done_B | (token_B == eos_id)), (token_B, logits_BV)

    keys = jax.random.split(jax.random.key(seed), max_new_tokens)
    start = (cache, logits_BV, jnp.sum(mask_BP, axis=1), jnp.zeros(ids_BP.shape[0], bool))
    _, (tokens_TB, logits_TBV) = jax.lax.scan(step, start, keys)
    return tokens_TB.T, jnp.swapaxes(logits_TBV, 0, 1)

  return run(params, cache, ids_BP, mask_BP)
