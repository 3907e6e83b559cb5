"""For mypy only: each registered objective class assigned to the Protocols it must satisfy
(bert_jax/objectives/protocol.py), so that a member missing or of the wrong type is a type error. Nothing imports this
module (it imports them all); tests/test_protocols.py checks the same at run time."""

from bert_jax.objectives.causal_lm import CausalLM
from bert_jax.objectives.classification import Classification
from bert_jax.objectives.masked_lm import MaskedLM
from bert_jax.objectives.permutation_lm import PermutationLM
from bert_jax.objectives.protocol import CarriesMemory, ObjectiveClass, Predicts, ReadsDocuments, TaskObjective
from bert_jax.objectives.question_answering import QuestionAnswering
from bert_jax.objectives.replaced_token_detection import ReplacedTokenDetection
from bert_jax.objectives.span_boundary import SpanBoundary
from bert_jax.objectives.span_corruption import SpanCorruption
from bert_jax.objectives.text_infilling import TextInfilling
from bert_jax.objectives.text_to_text import TextToText
from bert_jax.objectives.unilm import UniLM

_classes: tuple[ObjectiveClass, ...] = (
    CausalLM, Classification, MaskedLM, PermutationLM, QuestionAnswering, ReplacedTokenDetection, SpanBoundary,
    SpanCorruption, TextInfilling, TextToText, UniLM)
_pretraining: tuple[type[ReadsDocuments], ...] = (
    CausalLM, MaskedLM, PermutationLM, ReplacedTokenDetection, SpanBoundary, SpanCorruption, TextInfilling, UniLM)
_tasks: tuple[type[TaskObjective], ...] = (Classification, QuestionAnswering, TextToText)
_predicting: tuple[type[Predicts], ...] = (
    CausalLM, Classification, MaskedLM, PermutationLM, SpanCorruption, TextInfilling)
_carrying: tuple[type[CarriesMemory], ...] = (PermutationLM,)
