"""The objective registry. An objective is the seam between data and model: one module holds its
tf.data transform (the features it produces) and its loss and metrics (how the model consumes them).

An objective class declares the model families it serves, checked when the config loads (check_family):

  FAMILIES: tuple[str, ...] | None -> the config.model.family values it trains (None: any family whose model has the
      task head the objective asks for; the family's validate refuses the others)
  SETTINGS: its settings, a frozen dataclass (objectives/settings.py) whose defaults are what a config without the
      key runs; __init__ reads config.objective into self.settings once (an unknown key is an error), and a loaded
      config holds every setting (fill_defaults), so each takes a --config.objective.KEY override

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
      the text with each <mask> filled; mass writes each run of [MASK] as one fragment; causal_lm writes the next
      tokens after the text)

An objective that carries memory from batch to batch (XLNet with model.mem_len > 0) sets `carries_memory` and
adds:

  memory_spec(batch_size)          -> (shape, dtype) of the memory, one row per batch row (the train state holds it)
  forward_carrying(model, params, batch, memory, rngs) -> (sums, metrics, the memory for the next batch)
  stream_batches(documents, tokenizer, seed, train, rows, steps) -> batched features in which row r of a batch
      continues row r of the batch before, for `steps` batches
  stream_tokens(rows, steps)       -> tokens of text one such group of batches reads

An objective that reads the parameters of a model it does not train (the teacher of distillation, tinybert,
tinybert_task) adds:

  frozen_source                    -> objectives.teacher.Source (that model's config.model and parameter checkpoint),
      or None when it reads none this run; the Trainer loads and shards them (bert_jax/train/frozen.py)
  forward(model, params, batch, rngs, frozen) -> as forward, with those parameters (None: the objective runs without)
  initial_params(frozen_params)    -> the trained model's first parameters (unscanned) from the frozen ones
      (unscanned, numpy), or None to start at random

The training loss is sum over terms of sums[t] / counts[t], with counts taken over the whole global
batch, so gradient accumulation over microbatches equals one large batch exactly.

bert_jax/objectives/protocol.py writes this interface as typing.Protocol classes (Objective, ReadsDocuments,
TaskObjective, Predicts, CarriesMemory); get_objective returns an Objective, and carries_memory, predicts and is_task
narrow one to the optional parts.
"""

import importlib
from typing import Any, TypeGuard, cast

import ml_collections
import numpy as np

from bert_jax.errors import UserError
from bert_jax.objectives.protocol import CarriesMemory, Objective, ObjectiveClass, Predicts, TaskObjective

OBJECTIVES = {
    "masked_lm": "bert_jax.objectives.masked_lm:MaskedLM",
    "permutation_lm": "bert_jax.objectives.permutation_lm:PermutationLM",
    "span_corruption": "bert_jax.objectives.span_corruption:SpanCorruption",
    "text_infilling": "bert_jax.objectives.text_infilling:TextInfilling",
    "mass": "bert_jax.objectives.mass:Mass",
    "replaced_token_detection": "bert_jax.objectives.replaced_token_detection:ReplacedTokenDetection",
    "span_boundary": "bert_jax.objectives.span_boundary:SpanBoundary",
    "classification": "bert_jax.objectives.classification:Classification",
    "text_to_text": "bert_jax.objectives.text_to_text:TextToText",
    "question_answering": "bert_jax.objectives.question_answering:QuestionAnswering",
    "causal_lm": "bert_jax.objectives.causal_lm:CausalLM",
    "unilm": "bert_jax.objectives.unilm:UniLM",
    "distillation": "bert_jax.objectives.distillation:Distillation",
    "tinybert": "bert_jax.objectives.tinybert:TinyBert",
    "tinybert_task": "bert_jax.objectives.tinybert_task:TaskDistillation",
}


def objective_class(config: Any) -> ObjectiveClass:
  return class_named(config.objective.get("name", None))


def class_named(name: Any) -> ObjectiveClass:
  """The class of objective `name` (a key of OBJECTIVES)."""
  if name not in OBJECTIVES:
    raise UserError(f"objective.name must be one of {', '.join(OBJECTIVES)}, got {name!r}")
  module_name, class_name = OBJECTIVES[name].split(":")
  return getattr(importlib.import_module(module_name), class_name)


def get_objective(config: Any) -> Objective:
  return objective_class(config)(config)


def carries_memory(objective: Objective) -> TypeGuard[CarriesMemory]:
  """Whether the objective carries memory from batch to batch (XLNet with model.mem_len > 0)."""
  return bool(getattr(objective, "carries_memory", False))


def predicts(objective: Objective) -> TypeGuard[Predicts]:
  """Whether `bert-jax predict` can run the objective (it has predict)."""
  return callable(getattr(objective, "predict", None))


def is_task(objective: Objective) -> TypeGuard[TaskObjective]:
  """Whether the objective is a fine-tuning task's (its features come from the task's examples: arrays)."""
  return hasattr(objective, "task")


def settings_of(objective_config: Any):
  """The typed settings (the objective class's SETTINGS dataclass) of a config.objective, checked on their own."""
  from bert_jax.objectives import settings as settings_lib

  return settings_lib.from_config(class_named(objective_config.get("name", None)).SETTINGS, objective_config)


def check_keys(config: Any) -> None:
  """Refuses a key of config.objective that its objective does not know (one line, naming the keys it knows)."""
  from bert_jax.objectives import settings as settings_lib

  settings_lib.check_keys(objective_class(config).SETTINGS, config.objective)


def default_settings(name: str) -> dict:
  """{key: default} of objective `name`'s settings (what a config that leaves the key out runs)."""
  from bert_jax.objectives import settings as settings_lib

  return settings_lib.defaults(class_named(name).SETTINGS)


def default_config(name: str, **overrides) -> ml_collections.ConfigDict:
  """config.objective for objective `name`: its settings dataclass's defaults, then `overrides` (a recipe states
  only what differs), as models.default_config builds config.model."""
  objective = ml_collections.ConfigDict({"name": name, **default_settings(name)})
  objective.update(overrides)
  return objective


def fill_defaults(objective_config: Any) -> list[str]:
  """Writes into config.objective the settings it leaves out, with their defaults, so that every setting is listed
  (`bert-jax config`) and takes a --config.objective.KEY override, as config.model lists its family's; returns the
  keys it wrote. An unknown objective.name is left to the config's validation to refuse."""
  if objective_config.get("name", None) not in OBJECTIVES:
    return []
  missing = {k: v for k, v in default_settings(objective_config["name"]).items() if k not in objective_config}
  objective_config.update(missing)
  return list(missing)


def check_family(config: Any) -> None:
  """Refuses an objective on a model family it does not serve (its FAMILIES)."""
  families = objective_class(config).FAMILIES
  family = config.model.get("family", None)
  if families is not None and family not in families:
    raise UserError(f"objective {config.objective.name} serves families {', '.join(families)}; model.family is "
                    f"{family}")


def check_fits_positions(config: Any, table: str | None = None) -> None:
  """data.seq_len within the model's position table (a family with relative positions takes any length); `table`
  names the model key of the table's size (max_position) for the error to name and advise raising."""
  from bert_jax import models

  positions = models.max_sequence_length(config.model)
  if positions is not None and config.data.seq_len > positions:
    detail, advice = "", ""
    if table is not None:
      size = getattr(models.make_config(config.model), table)
      offset = (f" less the {size - positions} ids below the first position (model.position_offset)"
                if positions < size else "")
      detail, advice = f" (model.{table}={size}{offset})", f" or raise model.{table}"
    raise UserError(f"data.seq_len={config.data.seq_len} is more than the model's {positions} positions{detail}; set "
                    f"--config.data.seq_len={positions}{advice}")


def forward_with_memory(objective: Objective, model: Any, params: Any, batch: dict, memory: Any,
                        rngs: dict | None = None, frozen: Any = None) -> tuple[dict, dict, Any]:
  """(sums, metrics, next memory): an objective that carries memory gets it and returns the next; with memory None
  this is objective.forward, and the next memory None. `frozen`: the parameters an objective with a frozen_source
  reads (passed only when given)."""
  if memory is None:
    extra = {} if frozen is None else {"frozen": frozen}
    sums, metrics = objective.forward(model, params, batch, rngs=rngs, **extra)
    return sums, metrics, None
  # memory is only ever made for an objective that carries it (its memory_spec; the train state holds it)
  return cast(CarriesMemory, objective).forward_carrying(model, params, batch, memory, rngs=rngs)


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
