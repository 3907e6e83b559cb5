"""Sequence classification and regression (GLUE and users' own tasks) on an encoder with a task head
(model.head=classification: BERT, RoBERTa, ALBERT, ELECTRA, XLNet, SpanBERT, BART, GPT-2).

Features of one example (L = data.seq_len): input_ids, token_type_ids, attention_mask [L] int32, label [] (int32 index,
or float32 score for regression) and weight [] float32 (0 for rows that only fill a batch). One text or a pair is
framed as the model was pretrained (objective.framing names a framing of a family's descriptor,
bert_jax.models.family.Framing, whose templates the exported tokenizer carries too):
  bert     [CLS] A [SEP] B [SEP], token types 0 for A and 1 for B (BERT, ALBERT, ELECTRA, SpanBERT)
  roberta  <s> A </s></s> B </s>, token type 0 throughout
  bart     <s> A </s> B </s> with the tokenizer's </s> (BART's eos, where its classifier reads), token type 0
  xlnet    A <sep> B <sep> <cls>, token types 0, 1 and 2 for <cls> (the summary reads the last real token)
  gpt2     A <|endoftext|> B, token type 0 (the classifier reads the last real token, as transformers' does)
and a pair too long is cut one token at a time from the longer text (google-research/bert's _truncate_seq_pair).
Loss: cross-entropy (classification) or squared error (regression, num_labels 1), averaged over the weighted rows.

A task objective adds to the protocol (used by fine-tuning's batches, evaluation and test predictions):
  task                              the bert_jax.data.tasks.Task (examples and metrics)
  arrays(split, tokenizer)          -> features of every example of the split (numpy, weight 1)
  outputs(model, params, batch)     -> per-row outputs of a batch (jit-able)
  score(split, outputs)             -> {metric: value} of the split's outputs (rows in arrays' order)
  predicted_labels(split, outputs)  -> the prediction of each example as the task writes it (a label or a score)
"""

import dataclasses
import functools
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
import optax

from bert_jax import models, scores
from bert_jax.data import tasks as tasks_lib
from bert_jax.errors import UserError
from bert_jax.objectives import check_fits_positions, settings as settings_lib


@dataclasses.dataclass(frozen=True)
class ClassificationSettings(settings_lib.Settings):
  """config.objective of classification (bert_jax.recipes.finetune_config writes the pretrained family's framing)."""
  framing: str = "bert"  # how a text or a pair is framed: a framing of a family's descriptor (models.family.Framing)

  def check(self) -> None:
    models.framing(self.framing, "objective.framing")


class Classification:
  # every family whose model has a classification head (its validate refuses model.head otherwise)
  FAMILIES: ClassVar[tuple[str, ...] | None] = None
  SETTINGS: ClassVar[type[ClassificationSettings]] = ClassificationSettings
  settings: ClassificationSettings  # config.objective, read in __init__
  task: tasks_lib.Task

  def __init__(self, config: Any):
    self.config = config
    self.settings = settings_lib.from_config(self.SETTINGS, config.objective)
    self.seq_len = config.data.seq_len
    self.framing = self.settings.framing
    self.task = tasks_lib.load(config.task)
    self.regression = self.task.kind == "regression"
    self._arrays: dict[str, dict] = {}
    self.validate()

  def validate(self) -> None:
    model = self.config.model
    if model.get("head") != "classification":
      raise UserError(f"objective classification needs model.head=classification, got {model.get('head')!r}")
    wanted = 1 if self.regression else len(self.task.labels)
    if model.num_labels != wanted:
      raise UserError(f"task {self.task.name} has {wanted} output(s) but model.num_labels={model.num_labels}; set "
                      f"--config.model.num_labels={wanted}")
    check_fits_positions(self.config)

  def feature_spec(self, batch_size: int) -> dict:
    L = self.seq_len
    return {"input_ids": ((batch_size, L), np.int32), "token_type_ids": ((batch_size, L), np.int32),
            "attention_mask": ((batch_size, L), np.int32),
            "label": ((batch_size,), np.float32 if self.regression else np.int32),
            "weight": ((batch_size,), np.float32)}

  def synthetic_batch(self, batch_size: int, rng: np.random.Generator) -> dict:
    L, V = self.seq_len, self.config.model.vocab_size
    labels = rng.random(batch_size) * 5 if self.regression else rng.integers(0, self.config.model.num_labels,
                                                                               batch_size)
    return {"input_ids": rng.integers(5, V, (batch_size, L), dtype=np.int32),
            "token_type_ids": np.zeros((batch_size, L), np.int32), "attention_mask": np.ones((batch_size, L), np.int32),
            "label": labels.astype(self.feature_spec(1)["label"][1]), "weight": np.ones(batch_size, np.float32)}

  def arrays(self, split: str, tokenizer: Any) -> dict:
    if split not in self._arrays:
      examples = self.task.read(split)
      if not examples:
        raise UserError(f"task {self.task.name} has no examples in its {split} split")
      encoded = tokenizer.encode([text for e in examples for _, text in e.texts])
      rows, at = [], 0
      for e in examples:
        rows.append(frame(encoded[at:at + len(e.texts)], tokenizer, self.seq_len, self.framing))
        at += len(e.texts)
      features = {name: np.stack([r[k] for r in rows]) for k, name in
                  enumerate(("input_ids", "token_type_ids", "attention_mask"))}
      dtype = self.feature_spec(1)["label"][1]
      features["label"] = np.array([0 if e.label is None else e.label for e in examples], dtype)
      features["weight"] = np.ones(len(examples), np.float32)
      self._arrays[split] = features
    return self._arrays[split]

  def outputs(self, model, params, batch: dict, rngs: dict | None = None) -> dict:
    logits = model.apply({"params": params}, input_ids_BL=batch["input_ids"], token_type_ids_BL=batch["token_type_ids"],
                         attention_mask_BL=batch["attention_mask"], rngs=rngs)["logits"]
    return {"logits": logits.astype(jnp.float32)}

  def forward(self, model, params, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]:
    logits_BC = self.outputs(model, params, batch, rngs)["logits"]
    weight_B = batch["weight"]
    if self.regression:
      error_B = logits_BC[:, 0] - batch["label"]
      return {"task": jnp.sum(error_B ** 2 * weight_B)}, {"squared_error": jnp.sum(error_B ** 2 * weight_B)}
    nll_B = optax.softmax_cross_entropy_with_integer_labels(logits_BC, batch["label"])
    correct_B = (jnp.argmax(logits_BC, -1) == batch["label"]).astype(jnp.float32)
    return {"task": jnp.sum(nll_B * weight_B)}, {"correct": jnp.sum(correct_B * weight_B)}

  def counts(self, batch: dict) -> dict:
    return {"task": jnp.sum(batch["weight"])}

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    n = max(float(counts["task"]), 1.0)
    if self.regression:
      return {"loss": float(sums["task"]) / n, "mse": float(metrics["squared_error"]) / n}
    return {"loss": float(sums["task"]) / n, "accuracy": float(metrics["correct"]) / n}

  def _predictions(self, outputs: dict) -> np.ndarray:
    logits = np.asarray(outputs["logits"])
    return logits[:, 0] if self.regression else logits.argmax(-1)

  def score(self, split: str, outputs: dict, tokenizer: Any = None) -> dict:
    labels = self._arrays[split]["label"]
    return scores.score(self.task.metrics, labels, self._predictions(outputs))

  def predicted_labels(self, split: str, outputs: dict, tokenizer: Any = None) -> list:
    predictions = self._predictions(outputs)
    if self.regression:
      return [float(p) for p in predictions]
    return [self.task.labels[int(p)] for p in predictions]

  def predict(self, model, params, tokenizer, texts: list[str], top_k: int) -> list[dict]:
    """`bert-jax predict`: each text (a pair as two texts joined by a tab) framed as in training; the label and the
    top_k label probabilities, or the score of a regression."""
    import jax

    pieces = [text.split("\t")[:2] for text in texts]
    encoded = [tokenizer.encode(parts) for parts in pieces]
    rows = [frame(ids, tokenizer, self.seq_len, self.framing) for ids in encoded]
    batch = {name: np.stack([r[k] for r in rows]) for k, name in
             enumerate(("input_ids", "token_type_ids", "attention_mask"))}
    logits = np.asarray(jax.jit(lambda p, b: self.outputs(model, p, b)["logits"])(params, batch))
    records: list[dict] = []
    for text, row in zip(texts, logits):
      if self.regression:
        records.append({"input": text, "output": f"{row[0]:.4f}", "predictions": []})
        continue
      probabilities = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
      order = np.argsort(-probabilities)[:top_k]
      candidates = [{"token": self.task.labels[k], "probability": float(probabilities[k])} for k in order]
      records.append({"input": text, "output": self.task.labels[order[0]],
                      "predictions": [{"blank": "label", "candidates": candidates}]})
    return records


def truncate_pair(ids: list[list[int]], max_tokens: int) -> list[list[int]]:
  """Cuts the longer text by one token at a time, from its end, until they fit (google-research/bert)."""
  ids = [list(x) for x in ids]
  while sum(len(x) for x in ids) > max_tokens:
    longest = max(range(len(ids)), key=lambda k: (len(ids[k]), k))  # a tie cuts the second, as the original
    ids[longest].pop()
  return ids


@functools.cache
def _template(framing: str, pair: bool) -> tuple[tuple[str, int], ...]:
  """The framing's template for one text or a pair as (part, token type): part $A, $B or a tokenizer role."""
  found = models.framing(framing, "objective.framing")
  parts = []
  for part in (found.pair if pair else found.single).split():
    name, _, token_type = part.partition(":")
    parts.append((name if name.startswith("$") else name.strip("{}"), int(token_type or 0)))
  return tuple(parts)


def frame(ids: list[list[int]], tokenizer: Any, seq_len: int, framing: str) -> tuple[np.ndarray, ...]:
  """(input_ids, token_type_ids, attention_mask) of one text or pair, padded to seq_len."""
  template = _template(framing, len(ids) == 2)
  parts = dict(zip(("$A", "$B"), truncate_pair(ids, seq_len - sum(not p.startswith("$") for p, _ in template))))
  tokens: list[int] = []
  types: list[int] = []
  for part, token_type in template:
    piece_ids = parts[part] if part.startswith("$") else [getattr(tokenizer, f"{part}_id")]
    tokens += piece_ids
    types += [token_type] * len(piece_ids)
  padding = seq_len - len(tokens)
  return (np.array(tokens + [tokenizer.pad_id] * padding, np.int32), np.array(types + [0] * padding, np.int32),
          np.array([1] * len(tokens) + [0] * padding, np.int32))
