"""Which units masked-LM masking takes (objective.masking_unit) and when (objective.stages): ERNIE 1.0's knowledge
masking (Sun et al. 2019), trained in stages from basic units to phrases to named entities.

  piece   each token on its own (BERT)
  word    whole words: data.word_segmenter's, or the tokenizer's (the same as objective.whole_word=true)
  phrase  whole words, each noun phrase one unit (data/knowledge.py; needs data.word_segmenter=jieba_pos)
  entity  whole words, named entities first: a sequence masks its entities, each whole, before any other word, and
          other words fill what they leave of its budget (needs data.word_segmenter=jieba_pos)

objective.stages = ((steps, unit), ...) trains with each unit for its number of steps, in turn, and with the last
unit past their sum; evaluation masks with objective.masking_unit. A sequence's step is counted from the sequences
this process has masked before it (train.batch_size / processes a step), a count the pipeline's saved position
restores on resume; as the training examples are shuffled across a few batches (pipeline.EXAMPLE_SHUFFLE_BATCHES),
a change of unit reaches the batches over that many steps around its step.
"""

from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from bert_jax.errors import UserError
from bert_jax.objectives import settings as settings_lib

UNITS = ("piece", "word", "phrase", "entity")
KNOWLEDGE = ("phrase", "entity")  # the units whose starts only data.word_segmenter=jieba_pos stores
if TYPE_CHECKING:  # TensorFlow: imported where the pipeline runs
  from bert_jax.data.tf_cpu import tf

FLAGS = 8  # the stored flags take 3 bits (data/knowledge.py): word start, phrase-level start, entity start


def check(settings: Any) -> None:
  """masking_unit one of UNITS; stages pairs of (positive steps, unit); whole_word (the older key, the word unit)
  not with another unit."""
  settings_lib.check_choice(settings, "masking_unit", UNITS)
  for stage in settings.stages:
    if (not isinstance(stage, (tuple, list)) or len(stage) != 2 or not isinstance(stage[0], int)
        or isinstance(stage[0], bool) or stage[0] <= 0 or stage[1] not in UNITS):
      raise UserError(f"objective.stages must be pairs (steps > 0, unit in {', '.join(UNITS)}), e.g. "
                      f"((1000, 'piece'), (1000, 'entity')); got {settings.stages!r}")
  if settings.whole_word and (settings.stages or settings.masking_unit not in ("piece", "word")):
    raise UserError("objective.whole_word=true masks words, as objective.masking_unit=word does; set "
                    "--config.objective.whole_word=false with masking_unit or stages")


def by_units(settings: Any) -> bool:
  """Whether masking goes by this module's units (not the whole_word switch of BERT, ALBERT and BERT-wwm)."""
  return settings.masking_unit != "piece" or bool(settings.stages)


def used(settings: Any) -> set[str]:
  return {settings.masking_unit} | {unit for _, unit in settings.stages} | ({"word"} if settings.whole_word else set())


def check_data(settings: Any, segmenter: str) -> None:
  """The units against the data's segmenter: phrases and entities need jieba_pos, stored words some unit of words."""
  units = used(settings)
  knowledge = sorted(units & set(KNOWLEDGE))
  if knowledge and segmenter != "jieba_pos":
    raise UserError(f"objective masking by {' and '.join(knowledge)} needs the knowledge units prepared with the "
                    "data; set --config.data.word_segmenter=jieba_pos")
  if segmenter == "jieba" and units == {"piece"}:
    raise UserError("data.word_segmenter=jieba finds words for whole-word masking; set "
                    "--config.objective.whole_word=true (or data.word_segmenter=pieces)")
  if segmenter == "jieba_pos" and units == {"piece"}:
    raise UserError("data.word_segmenter=jieba_pos finds ERNIE's knowledge units; set --config.objective.masking_unit "
                    "(word, phrase or entity) or --config.objective.stages (or data.word_segmenter=pieces)")


def schedule(settings: Any, train: bool) -> tuple[np.ndarray, np.ndarray]:
  """(first step [S], unit index [S]) of each stage: training's stages, or masking_unit alone."""
  stages = settings.stages if train and settings.stages else ((1, settings.masking_unit),)
  steps = np.cumsum([0] + [steps for steps, _ in stages[:-1]]).astype(np.int64)
  return steps, np.array([UNITS.index(unit) for _, unit in stages], np.int32)


def local_batch(config: Any) -> int:
  """The sequences one step takes from this process's pipeline."""
  return max(1, config.train.batch_size // jax.process_count())


def unit_at(schedule_: tuple[np.ndarray, np.ndarray], step: "tf.Tensor") -> "tf.Tensor":
  """The unit index (into UNITS) of the stage that `step` (int64 scalar) falls in."""
  from bert_jax.data.tf_cpu import tf

  first_steps, units = schedule_
  stage = tf.searchsorted(tf.constant(first_steps), tf.reshape(step, [1]), side="right")[0] - 1
  return tf.gather(tf.constant(units), stage)


def starts(unit: "tf.Tensor", input_ids_BL: "tf.Tensor", flags_BL: "tf.Tensor | None",
           word_start_V: "tf.Tensor") -> tuple["tf.Tensor", "tf.Tensor"]:
  """(unit start [B, L], priority [B, L]) of unit index `unit` for masked_lm_data.mask_tokens with whole_word:
  where units begin, and the starts of the units a sequence takes first (entities). flags_BL: the stored flags, or
  None where the data stores none (the tokenizer's word starts, word_start_V, serve the word unit)."""
  from bert_jax.data.tf_cpu import tf

  ones = tf.ones_like(input_ids_BL, tf.bool)
  if flags_BL is None:
    word = tf.gather(word_start_V, input_ids_BL)
    phrase = entity = word  # never chosen: check_data wants jieba_pos for them
  else:
    word, phrase, entity = (tf.bitwise.bitwise_and(flags_BL, bit) > 0 for bit in (1, 2, 4))
  start_options = tf.stack([ones, word, phrase, word])
  priority_options = tf.stack([~ones, ~ones, ~ones, entity])
  return tf.gather(start_options, unit), tf.gather(priority_options, unit)
