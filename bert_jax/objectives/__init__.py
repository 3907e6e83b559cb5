"""The objective registry. An objective is the seam between data and model: one module holds its
tf.data transform (the features it produces) and its loss and metrics (how the model consumes them).

An objective class declares the model families it serves, checked when the config loads (check_family):

  FAMILIES: tuple[str, ...] | None -> the config.model.family values it trains (None: any family whose model has the
      task head the objective asks for; the family's validate refuses the others)

and is built from the whole config and provides:

  feature_spec(batch_size)         -> {name: (shape, dtype)} of one batch
  synthetic_batch(batch_size, rng) -> a batch of random features of that spec (benchmarks, plans)
  forward(model, params, batch, rngs) -> (sums, metrics): summed loss per term, summed metrics
  counts(batch)                    -> {term: denominator} for each loss term, from the batch alone
  summarize(totals)                -> readable metrics from accumulated sums, metrics and counts
  dataset(documents, tokenizer, seed, train) -> unbatched tf.data.Dataset of features; documents is a
      tf.data.Dataset of {"token_ids": int32 [T], "sentence_lengths": int32 [S]} (a document's sentences
      concatenated: bert_jax.data.pipeline.documents), tokenizer a bert_jax.data.tokenizer.Tokenizer, seed an
      int; the transform is stateless graph ops seeded by (seed, position in the stream)

An objective that `bert-jax predict` can run adds (bert_jax/predict.py; records as objectives/blanks.py writes them):

  predict(model, params, tokenizer, texts, top_k) -> one record per text: {"input", "output", "predictions"}
      (masked_lm and permutation_lm fill each [MASK], span_corruption each <extra_id_N>; text_infilling rewrites
      the text with each <mask> filled; causal_lm writes the next tokens after the text)

An objective that carries memory from batch to batch (XLNet with model.mem_len > 0) sets `carries_memory` and
adds:

  memory_spec(batch_size)          -> (shape, dtype) of the memory, one row per batch row (the train state holds it)
  forward_carrying(model, params, batch, memory, rngs) -> (sums, metrics, the memory for the next batch)
  stream_batches(documents, tokenizer, seed, train, rows, steps) -> batched features in which row r of a batch
      continues row r of the batch before, for `steps` batches
  stream_tokens(rows, steps)       -> tokens of text one such group of batches reads

The training loss is sum over terms of sums[t] / counts[t], with counts taken over the whole global
batch, so gradient accumulation over microbatches equals one large batch exactly.
"""

import importlib
from typing import Any

import numpy as np

from bert_jax.errors import UserError

OBJECTIVES = {
    "masked_lm": "bert_jax.objectives.masked_lm:MaskedLM",
    "permutation_lm": "bert_jax.objectives.permutation_lm:PermutationLM",
    "span_corruption": "bert_jax.objectives.span_corruption:SpanCorruption",
    "text_infilling": "bert_jax.objectives.text_infilling:TextInfilling",
    "replaced_token_detection": "bert_jax.objectives.replaced_token:ReplacedTokenDetection",
    "span_boundary": "bert_jax.objectives.span_boundary:SpanBoundary",
    "classification": "bert_jax.objectives.classification:Classification",
    "text_to_text": "bert_jax.objectives.text_to_text:TextToText",
    "question_answering": "bert_jax.objectives.question_answering:QuestionAnswering",
    "causal_lm": "bert_jax.objectives.causal_lm:CausalLM",
    "unilm": "bert_jax.objectives.unilm:UniLM",
}


def objective_class(config: Any) -> type:
  name = config.objective.get("name", None)
  if name not in OBJECTIVES:
    raise UserError(f"objective.name must be one of {', '.join(OBJECTIVES)}, got {name!r}")
  module_name, class_name = OBJECTIVES[name].split(":")
  return getattr(importlib.import_module(module_name), class_name)


def get_objective(config: Any):
  return objective_class(config)(config)


def check_family(config: Any) -> None:
  """Refuses an objective on a model family it does not serve (its FAMILIES)."""
  families = objective_class(config).FAMILIES
  family = config.model.get("family", None)
  if families is not None and family not in families:
    raise UserError(f"objective {config.objective.name} serves families {', '.join(families)}; model.family is "
                    f"{family}")


def check_fits_positions(config: Any) -> None:
  """data.seq_len within the model's position table (a family with relative positions takes any length)."""
  from bert_jax import models

  positions = models.max_sequence_length(config.model)
  if positions is not None and config.data.seq_len > positions:
    raise UserError(f"data.seq_len={config.data.seq_len} is more than the model's {positions} positions; set "
                    f"--config.data.seq_len={positions}")


def forward_with_memory(objective: Any, model: Any, params: Any, batch: dict, memory: Any, rngs: dict | None = None):
  """(sums, metrics, next memory): an objective that carries memory gets it and returns the next; with memory None
  this is objective.forward, and the next memory None."""
  if memory is None:
    return (*objective.forward(model, params, batch, rngs=rngs), None)
  return objective.forward_carrying(model, params, batch, memory, rngs=rngs)


def training_loss(sums: dict, counts: dict):
  """sum_t sums[t] / counts[t]; an empty term (count 0) contributes 0."""
  return sum(sums[t] / (counts[t] + (counts[t] == 0)) for t in sums)


def summarize_tokens(term: str, sums: dict, metrics: dict, counts: dict) -> dict:
  """Host-side numbers: the total loss, and `term`'s loss, accuracy (from metrics[f"{term}_correct"]) and
  perplexity per counted token."""
  n = max(float(counts[term]), 1.0)
  loss = float(sums[term]) / n
  return {"loss": float(training_loss({t: float(v) for t, v in sums.items()},
                                      {t: float(v) for t, v in counts.items()})),
          f"{term}_loss": loss, f"{term}_accuracy": float(metrics[f"{term}_correct"]) / n,
          f"{term}_perplexity": float(np.exp(min(loss, 50.0)))}


def greedy_decode(model, params, encoder_tokens_BL, encoder_mask_BL, length: int, eos_id: int, start_id: int = 0):
  """[B, length] int32: an encoder-decoder's greedy decode (its `encode(tokens, mask)` and `decode(encoded,
  decoder_tokens, mask, decoder_mask)` methods: T5's, BART's), the decoder starting from `start_id`, every position
  recomputed at each step; after a row's `eos_id` its tokens are 0."""
  import jax
  import jax.numpy as jnp

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
