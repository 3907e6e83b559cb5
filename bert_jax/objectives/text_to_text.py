"""T5's fine-tuning: every task as text to text (Raffel et al. 2020, section 2.4; the t5 repository's GLUE
preprocessors). The input names the task and each text by its field, in the fields' alphabetical order as T5's
glue preprocessor writes them ("mnli hypothesis: ... premise: ..."); the target is the label's word
("entailment", "not_equivalent") or, for a regression task, the score rounded to the nearest 0.2 ("3.8"). Both end
with EOS; an input too long keeps its first data.seq_len - 1 tokens. The loss is span corruption's (cross-entropy
and z-loss on the target tokens); evaluation decodes greedily and maps the text back: a word that is no label
counts as wrong, a score that does not parse as -1 (T5's string_to_float default).

Features: span corruption's, unpacked (one example a row), and weight [] float32 (0 for rows that fill a batch).
The task-objective protocol (arrays, outputs, score, predicted_labels) is objectives/classification.py's.
"""

import dataclasses
from typing import Any

import numpy as np

from bert_jax import scores
from bert_jax.data import tasks as tasks_lib
from bert_jax.errors import UserError
from bert_jax.objectives import decoding, settings as settings_lib
from bert_jax.objectives.span_corruption import SpanCorruption, Targets


@dataclasses.dataclass(frozen=True)
class TextToTextSettings(Targets):
  """config.objective of text_to_text: span corruption's targets and z-loss; the defaults are T5's fine-tuning
  recipe's (bert_jax.models.t5.finetune: 8 target tokens) and z_loss's fallback (off)."""
  targets_length: int = 8  # decoder length: the longest label word or score, with EOS


class TextToText(SpanCorruption):
  FAMILIES = ("t5",)
  SETTINGS = TextToTextSettings
  task: tasks_lib.Task

  def __init__(self, config: Any):  # span corruption's loss, not its data arithmetic
    self.config = config
    self.settings = settings_lib.from_config(self.SETTINGS, config.objective)
    self.task = tasks_lib.load(config.task)
    if self.task.kind not in ("classification", "regression"):
      raise UserError(f"T5's text-to-text fine-tuning here takes classification and regression tasks, not "
                      f"{self.task.name}")
    self.regression = self.task.kind == "regression"
    self.inputs_length = config.data.seq_len
    self.targets_length = self.settings.targets_length
    self.z_loss = float(self.settings.z_loss)
    self.prefix = self.task.name.removeprefix("glue/")
    self._arrays: dict[str, dict] = {}
    self.labels: dict[str, np.ndarray] = {}
    if not self.regression and len(self.task.words) != len(self.task.labels):
      raise UserError(f"task {self.task.name} has no label words for T5's text-to-text format")

  def feature_spec(self, batch_size: int) -> dict:
    return {**super().feature_spec(batch_size), "weight": ((batch_size,), np.float32)}

  def synthetic_batch(self, batch_size: int, rng: np.random.Generator) -> dict:
    return {**super().synthetic_batch(batch_size, rng), "weight": np.ones(batch_size, np.float32)}

  def target_text(self, label: Any) -> str:
    return f"{round(float(label) * 5) / 5:.1f}" if self.regression else self.task.words[int(label)]

  def input_text(self, example: tasks_lib.Example) -> str:
    return " ".join([self.prefix] + [f"{name}: {text}" for name, text in sorted(example.texts)])

  def arrays(self, split: str, tokenizer: Any) -> dict:
    if split in self._arrays:
      return self._arrays[split]
    examples = self.task.read(split)
    if not examples:
      raise UserError(f"task {self.task.name} has no examples in its {split} split")
    eos, n = tokenizer.eos_id, len(examples)
    inputs = tokenizer.encode([self.input_text(e) for e in examples])
    targets = tokenizer.encode([self.target_text(0 if e.label is None else e.label) for e in examples])
    features = {name: np.zeros((n, self.inputs_length if name.startswith("encoder") else self.targets_length),
                               np.int32) for name in self.feature_spec(1) if name != "weight"}
    for k, (source, target) in enumerate(zip(inputs, targets)):
      source = [*source[:self.inputs_length - 1], eos]
      if len(target) + 1 > self.targets_length:
        raise UserError(f"the target {self.target_text(examples[k].label)!r} takes {len(target) + 1} tokens but "
                        f"objective.targets_length={self.targets_length}; raise it")
      target = [*target, eos]
      features["encoder_input_tokens"][k, :len(source)] = source
      features["encoder_segment_ids"][k, :len(source)] = 1
      features["decoder_target_tokens"][k, :len(target)] = target
      features["decoder_segment_ids"][k, :len(target)] = 1
      features["decoder_positions"][k, :len(target)] = np.arange(len(target))
    features["weight"] = np.ones(n, np.float32)
    self.labels[split] = np.array([0 if e.label is None else e.label for e in examples],
                                  np.float32 if self.regression else np.int32)
    self._arrays[split] = features
    return features

  def outputs(self, model, params, batch: dict, rngs: dict | None = None) -> dict:
    return {"tokens": decoding.greedy_decode(model, params, batch["encoder_input_tokens"], batch["encoder_segment_ids"],
                                     self.targets_length, self.config.model.eos_token_id)}

  def _decoded(self, outputs: dict, tokenizer: Any) -> list[str]:
    eos, texts = self.config.model.eos_token_id, []
    for row in np.asarray(outputs["tokens"]):
      ids = [int(i) for i in row]
      texts.append(tokenizer.decode(ids[:ids.index(eos)] if eos in ids else ids).strip())
    return texts

  def _predictions(self, texts: list[str]) -> np.ndarray:
    if self.regression:
      return np.array([_float_or(text, -1.0) for text in texts], np.float32)
    words = {word: k for k, word in enumerate(self.task.words)}
    return np.array([words.get(text, -1) for text in texts], np.int32)

  def score(self, split: str, outputs: dict, tokenizer: Any) -> dict:
    return scores.score(self.task.metrics, self.labels[split], self._predictions(self._decoded(outputs, tokenizer)))

  def predicted_labels(self, split: str, outputs: dict, tokenizer: Any) -> list:
    texts = self._decoded(outputs, tokenizer)
    if self.regression:
      return [float(p) for p in self._predictions(texts)]
    return [self.task.labels[p] if p >= 0 else text for p, text in zip(self._predictions(texts), texts)]


def _float_or(text: str, default: float) -> float:
  try:
    return float(text)
  except ValueError:
    return default
