"""The objective interface (bert_jax/objectives/__init__.py describes each member) as typing.Protocol classes, which
the registered objective classes satisfy structurally (no subclassing):

  ObjectiveClass  an objective class itself: FAMILIES, SETTINGS, and called with the config it builds an Objective
  Objective       what every objective provides (training, evaluation, benchmarks and plans use it)
  ReadsDocuments  a pretraining objective: dataset(documents, tokenizer, seed, train)
  TaskObjective   a fine-tuning task's objective (objectives/classification.py): task, arrays, outputs, score,
                  predicted_labels
  Predicts        one that `bert-jax predict` can run: predict(model, params, tokenizer, texts, top_k)
  CarriesMemory   one that carries memory from batch to batch (XLNet): carries_memory, memory_spec,
                  forward_carrying, stream_batches, stream_tokens

mypy checks each registered class against its Protocols (the block at the end of this module);
tests/test_protocols.py checks at run time that each has every member its Protocols list (PROTOCOL_MEMBERS).
"""

from typing import Any, Protocol

import numpy as np

from bert_jax.objectives.settings import Settings

# {feature name: (shape, dtype)} of one batch
FeatureSpec = dict[str, tuple[tuple[int, ...], type[np.generic]]]


class ObjectiveClass(Protocol):
  """An objective class (what objectives.class_named returns), read when a config loads and before it is built."""

  @property
  def FAMILIES(self) -> tuple[str, ...] | None:  # noqa: N802 (the class constant's name)
    """The config.model.family values it trains; None: any family whose model has the head it asks for."""
    ...

  @property
  def SETTINGS(self) -> type[Settings]:  # noqa: N802 (the class constant's name)
    """Its settings dataclass (objectives/settings.py)."""
    ...

  def __call__(self, config: Any) -> "Objective":
    """The objective built from the whole config."""
    ...


class Objective(Protocol):
  """What every objective provides (the registry's docstring describes each member)."""

  @property
  def FAMILIES(self) -> tuple[str, ...] | None: ...  # noqa: N802 (the class constant's name)

  @property
  def SETTINGS(self) -> type[Settings]: ...  # noqa: N802 (the class constant's name)

  @property
  def settings(self) -> Settings:
    """config.objective read once into SETTINGS."""
    ...

  def feature_spec(self, batch_size: int) -> FeatureSpec: ...

  def synthetic_batch(self, batch_size: int, rng: np.random.Generator) -> dict: ...

  def forward(self, model: Any, params: Any, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]: ...

  def counts(self, batch: dict) -> dict: ...

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict: ...


class ReadsDocuments(Objective, Protocol):
  """A pretraining objective: its features come from a stream of tokenized documents."""

  def dataset(self, documents: Any, tokenizer: Any, seed: int, train: bool) -> Any: ...


class TaskObjective(Objective, Protocol):
  """A fine-tuning task's objective: its features come from the task's examples (objectives/classification.py)."""

  @property
  def task(self) -> Any: ...

  def arrays(self, split: str, tokenizer: Any) -> dict: ...

  def outputs(self, model: Any, params: Any, batch: dict, rngs: dict | None = None) -> dict: ...

  def score(self, split: str, outputs: dict, tokenizer: Any) -> dict: ...

  def predicted_labels(self, split: str, outputs: dict, tokenizer: Any) -> list: ...


class Predicts(Protocol):
  """An objective that `bert-jax predict` can run (bert_jax/predict.py)."""

  def predict(self, model: Any, params: Any, tokenizer: Any, texts: list[str], top_k: int) -> list[dict]: ...


class CarriesMemory(ReadsDocuments, Protocol):
  """An objective that carries memory from batch to batch (XLNet with model.mem_len > 0: carries_memory true)."""

  @property
  def carries_memory(self) -> bool: ...

  def memory_spec(self, batch_size: int) -> tuple[tuple[int, ...], Any]: ...

  def forward_carrying(self, model: Any, params: Any, batch: dict, memory: Any,
                       rngs: dict | None = None) -> tuple[dict, dict, Any]: ...

  def stream_batches(self, documents: Any, tokenizer: Any, seed: int, train: bool, rows: int, steps: int) -> Any: ...

  def stream_tokens(self, rows: int, steps: int) -> int: ...


def members(protocol: type) -> frozenset[str]:
  """The members a Protocol requires, its bases' included (what typing.get_protocol_members gives on Python 3.13)."""
  found: set[str] = set()
  for cls in protocol.__mro__:
    if cls is object or cls is Protocol or not getattr(cls, "_is_protocol", False):
      continue
    found.update(k for k in vars(cls) if not k.startswith("_") or k == "__call__")
    found.update(getattr(cls, "__annotations__", {}))
  return frozenset(found)
