"""Extractive question answering (SQuAD v1.1 and v2.0) on an encoder with a span head (model.head=span): BERT's
run_squad.py. Each question and its context become windows of data.seq_len tokens, [CLS] question [SEP] context
[SEP], the context cut with a stride of objective.doc_stride tokens (bert_jax/data/squad.py); the loss is the mean of
the start and end positions' cross-entropies; the answer is the best span over a question's windows (n_best starts
and ends, at most objective.max_answer_len tokens; v2.0: "" when the null score beats it by null_threshold), scored
with the official scripts' exact match and F1 (bert_jax/scores.py).

Features of one window (L = data.seq_len): input_ids, token_type_ids, attention_mask [L] int32, start_positions and
end_positions [] int32 (0, [CLS], where the answer is not in the window or there is none), weight [] float32.
The task-objective protocol (arrays, outputs, score) is objectives/classification.py's; a window is a row.
"""

import dataclasses
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
import optax

from bert_jax import scores
from bert_jax.data import squad, tasks as tasks_lib
from bert_jax.errors import UserError
from bert_jax.objectives import check_fits_positions, settings as settings_lib

POSITIONS = ("start_positions", "end_positions")


@dataclasses.dataclass(frozen=True)
class QuestionAnsweringSettings(settings_lib.Settings):
  """config.objective of question_answering; the defaults are BERT's run_squad.py flags, as
  bert_jax.recipes.finetune_config writes them."""
  doc_stride: int = 128  # the context's windows start this many tokens apart
  max_query_len: int = 64  # a question keeps its first max_query_len tokens
  max_answer_len: int = 30  # the longest answer, in tokens
  n_best: int = 20  # starts and ends considered per window
  null_threshold: float = 0.0  # SQuAD v2.0: "" (no answer) when the null score beats the best span by this

  def check(self) -> None:
    settings_lib.check_positive(self, "doc_stride", "max_query_len", "max_answer_len", "n_best")


class QuestionAnswering:
  # every family whose model has a span head (its validate refuses model.head otherwise)
  FAMILIES: ClassVar[tuple[str, ...] | None] = None
  SETTINGS: ClassVar[type[QuestionAnsweringSettings]] = QuestionAnsweringSettings
  settings: QuestionAnsweringSettings  # config.objective, read in __init__
  task: tasks_lib.Task

  def __init__(self, config: Any):
    self.config = config
    self.settings = settings_lib.from_config(self.SETTINGS, config.objective)
    self.seq_len = config.data.seq_len
    self.task = tasks_lib.load(config.task)
    self._features: dict[str, squad.Features] = {}
    if config.model.get("head") != "span":
      raise UserError(f"objective question_answering needs model.head=span, got {config.model.get('head')!r}")
    if self.seq_len <= self.settings.max_query_len + 3:
      raise UserError(f"data.seq_len={self.seq_len} leaves no room for the context after a question of up to "
                      f"objective.max_query_len={self.settings.max_query_len} tokens, [CLS] and two [SEP]; raise "
                      "data.seq_len or lower objective.max_query_len")
    check_fits_positions(self.config)

  def feature_spec(self, batch_size: int) -> dict:
    L = self.seq_len
    return {"input_ids": ((batch_size, L), np.int32), "token_type_ids": ((batch_size, L), np.int32),
            "attention_mask": ((batch_size, L), np.int32), "start_positions": ((batch_size,), np.int32),
            "end_positions": ((batch_size,), np.int32), "weight": ((batch_size,), np.float32)}

  def synthetic_batch(self, batch_size: int, rng: np.random.Generator) -> dict:
    L = self.seq_len
    start = rng.integers(0, L, batch_size, dtype=np.int32)
    return {"input_ids": rng.integers(5, self.config.model.vocab_size, (batch_size, L), dtype=np.int32),
            "token_type_ids": np.zeros((batch_size, L), np.int32), "attention_mask": np.ones((batch_size, L), np.int32),
            "start_positions": start, "end_positions": np.minimum(start + 3, L - 1).astype(np.int32),
            "weight": np.ones(batch_size, np.float32)}

  def arrays(self, split: str, tokenizer: Any) -> dict:
    if split not in self._features:
      examples = self.task.read(split)
      if not examples:
        raise UserError(f"task {self.task.name} has no questions in its {split} split")
      self._features[split] = squad.features(examples, tokenizer, self.seq_len, self.settings.doc_stride,
                                             self.settings.max_query_len, is_training=split == "train")
    found = self._features[split]
    return {**found.arrays(), "start_positions": found.start_positions, "end_positions": found.end_positions,
            "weight": np.ones(len(found), np.float32)}

  def outputs(self, model, params, batch: dict, rngs: dict | None = None) -> dict:
    out = model.apply({"params": params}, input_ids_BL=batch["input_ids"], token_type_ids_BL=batch["token_type_ids"],
                      attention_mask_BL=batch["attention_mask"], rngs=rngs)
    return {"start_logits": out["start_logits"].astype(jnp.float32),
            "end_logits": out["end_logits"].astype(jnp.float32)}

  def forward(self, model, params, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]:
    outputs, weight_B = self.outputs(model, params, batch, rngs), batch["weight"]
    nll_B, correct_B = 0.0, 1.0
    for logits, positions in zip(("start_logits", "end_logits"), POSITIONS):
      nll_B += optax.softmax_cross_entropy_with_integer_labels(outputs[logits], batch[positions]) / 2
      correct_B *= (jnp.argmax(outputs[logits], -1) == batch[positions]).astype(jnp.float32)
    return {"span": jnp.sum(nll_B * weight_B)}, {"span_correct": jnp.sum(correct_B * weight_B)}

  def counts(self, batch: dict) -> dict:
    return {"span": jnp.sum(batch["weight"])}

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    n = max(float(counts["span"]), 1.0)
    return {"loss": float(sums["span"]) / n, "span_accuracy": float(metrics["span_correct"]) / n}

  def answers(self, split: str, outputs: dict) -> tuple[dict[str, str], dict[str, float] | None]:
    """({question id: answer text}, {question id: null odds}, v2.0 only) of a split's outputs."""
    o = self.settings
    found = self._features[split]
    version_2 = any(e.is_impossible for e in found.examples)
    answers, null_odds, _ = squad.best_answers(found, np.asarray(outputs["start_logits"]),
                                               np.asarray(outputs["end_logits"]), o.n_best, o.max_answer_len,
                                               o.null_threshold, version_2)
    return answers, null_odds if version_2 else None

  def score(self, split: str, outputs: dict, tokenizer: Any = None) -> dict:
    answers, null_odds = self.answers(split, outputs)
    return scores.squad_scores(answers, self._features[split].examples, null_odds)

  def predicted_labels(self, split: str, outputs: dict, tokenizer: Any = None) -> list:
    answers, _ = self.answers(split, outputs)
    return [answers[e.qid] for e in self._features[split].examples]
