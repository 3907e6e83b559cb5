"""Decoding with a trained model: an encoder-decoder's greedy decode (T5, BART), and a decoder's generation with
the KV cache, greedy or sampled (GPT-2). Objectives call these from predict and evaluation."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bert_jax.models import gpt2


def greedy_decode(model, params, encoder_tokens_BL, encoder_mask_BL, length: int, eos_id: int, start_id: int = 0):
  """[B, length] int32: an encoder-decoder's greedy decode (its `encode(tokens, mask)` and `decode(encoded,
  decoder_tokens, mask, decoder_mask)` methods: T5's, BART's), the decoder starting from `start_id`, every position
  recomputed at each step; after a row's `eos_id` its tokens are 0."""
  def run(params, encoder_tokens_BL, encoder_mask_BL):
    variables = {"params": params}
    encoded_BLD = model.apply(variables, encoder_tokens_BL, encoder_mask_BL, method="encode")

    def step(t, state):
      decoder_in_BT, out_BT, done_B = state
      logits_BTV = model.apply(variables, encoded_BLD, decoder_in_BT, encoder_mask_BL,
                               jnp.ones_like(decoder_in_BT), method="decode")
      token_B = jnp.where(done_B, 0, jnp.argmax(logits_BTV[:, t], -1).astype(jnp.int32))
      out_BT = out_BT.at[:, t].set(token_B)
      decoder_in_BT = decoder_in_BT.at[:, t + 1].set(token_B, mode="drop")
      return decoder_in_BT, out_BT, done_B | (token_B == eos_id)

    rows = encoder_tokens_BL.shape[0]
    start_BT = jnp.zeros((rows, length), jnp.int32).at[:, 0].set(start_id)
    state = (start_BT, jnp.zeros((rows, length), jnp.int32), jnp.zeros((rows,), bool))
    return jax.lax.fori_loop(0, length, step, state)[1]

  return jax.jit(run)(params, encoder_tokens_BL, encoder_mask_BL)


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
