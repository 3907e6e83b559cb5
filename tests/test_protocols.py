"""The objective and model-family interfaces as Protocols (bert_jax/objectives/protocol.py,
bert_jax/models/protocol.py): each registered objective class and family module has every member its Protocols
require, so that a new objective or family that misses one fails here (mypy checks their signatures)."""

import importlib

import pytest

from bert_jax import models, objectives
from bert_jax.models import protocol as family_protocol
from bert_jax.objectives import protocol

# The members each Protocol lists (typing.get_protocol_members on Python 3.13), written out: a member added to a
# Protocol is added here too.
EXPECTED = {
    protocol.ObjectiveClass: {"FAMILIES", "SETTINGS", "__call__"},
    protocol.Objective: {"FAMILIES", "SETTINGS", "settings", "feature_spec", "synthetic_batch", "forward", "counts",
                         "summarize"},
    protocol.Predicts: {"predict"},
    family_protocol.FamilyModule: {"FAMILY", "make_config", "validate", "build", "build_encoder", "example_inputs",
                                   "to_layout"},
    family_protocol.PositionTable: {"max_sequence_length"},
}
EXPECTED[protocol.ReadsDocuments] = EXPECTED[protocol.Objective] | {"dataset"}
EXPECTED[protocol.TaskObjective] = EXPECTED[protocol.Objective] | {"task", "arrays", "outputs", "score",
                                                                  "predicted_labels"}
EXPECTED[protocol.CarriesMemory] = EXPECTED[protocol.ReadsDocuments] | {
    "carries_memory", "memory_spec", "forward_carrying", "stream_batches", "stream_tokens"}


def declares(cls: type, name: str) -> bool:
  """The class has `name`: an attribute (method, constant, property) or an instance attribute it declares with an
  annotation (set in __init__, as `settings`)."""
  return hasattr(cls, name) or any(name in vars(k).get("__annotations__", {}) for k in cls.__mro__)


def missing(cls: type, proto: type) -> list[str]:
  return sorted(name for name in protocol.members(proto) if name != "__call__" and not declares(cls, name))


@pytest.mark.parametrize("proto", list(EXPECTED), ids=lambda p: p.__name__)
def test_protocol_members(proto):
  assert protocol.members(proto) == EXPECTED[proto]


@pytest.mark.parametrize("name", sorted(objectives.OBJECTIVES))
def test_objective_has_every_member(name):
  cls = objectives.class_named(name)
  assert callable(cls)
  assert missing(cls, protocol.ObjectiveClass) == []
  assert missing(cls, protocol.Objective) == []
  # its features come from documents (pretraining) or from a task's examples (fine-tuning)
  kinds = [p for p in (protocol.ReadsDocuments, protocol.TaskObjective) if not missing(cls, p)]
  assert kinds, (f"{name} has neither ReadsDocuments' members (missing {missing(cls, protocol.ReadsDocuments)}) nor "
                 f"TaskObjective's (missing {missing(cls, protocol.TaskObjective)})")
  # an optional interface is all or nothing: a class with one of its own members has them all
  for optional, base in ((protocol.Predicts, None), (protocol.CarriesMemory, protocol.ReadsDocuments)):
    own = protocol.members(optional) - (protocol.members(base) if base else set())
    if any(declares(cls, m) for m in own):
      assert missing(cls, optional) == [], f"{name} has part of {optional.__name__}"


def test_memory_and_predict_objectives():
  """The objectives that carry memory and that `bert-jax predict` runs are the ones the registry's docstring names."""
  carrying = {n for n in objectives.OBJECTIVES if not missing(objectives.class_named(n), protocol.CarriesMemory)}
  assert carrying == {"permutation_lm"}
  predicting = {n for n in objectives.OBJECTIVES if not missing(objectives.class_named(n), protocol.Predicts)}
  assert {"masked_lm", "permutation_lm", "span_corruption", "text_infilling", "causal_lm"} <= predicting


def test_a_class_missing_a_member_is_caught():
  class Incomplete:
    FAMILIES = None
    SETTINGS = object
    settings: object

    def feature_spec(self, batch_size):
      return {}

  assert missing(Incomplete, protocol.Objective) == ["counts", "forward", "summarize", "synthetic_batch"]
  assert missing(Incomplete, protocol.ObjectiveClass) == []


@pytest.mark.parametrize("name", sorted(models.FAMILIES))
def test_family_module_has_every_member(name):
  module = models.family({"family": name})
  assert module is importlib.import_module(models.FAMILIES[name])
  absent = sorted(m for m in protocol.members(family_protocol.FamilyModule) if not hasattr(module, m))
  assert absent == [], f"models/{name}.py lacks {absent}"
  assert isinstance(module.FAMILY, models.Family) and module.FAMILY.name == name
  # max_sequence_length is optional; where present it is a function of the family's settings
  limit = getattr(module, "max_sequence_length", None)
  if limit is not None:
    assert isinstance(limit(module.make_config({})), int)
