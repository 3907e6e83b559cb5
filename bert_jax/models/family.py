"""A family's descriptor: what the family owns beyond its model, registered once in its model module as `FAMILY`.

It holds names and plain data only (objective names, module paths, Hugging Face model types, templates), because
the code that reads them sits in the layers above models (objectives, convert, defaults, benchmark), which look a
family's facts up here instead of switching on its name.
"""

from collections.abc import Callable, Mapping
import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Framing:
  """How one text (`single`) or a pair (`pair`) becomes a model's input, in the template language of tokenizers'
  TemplateProcessing: {role} a special token (the tokenizer's ROLE_id: cls, sep, eos, eod), $A and $B the texts,
  ":N" the token type of what it follows (0 where absent). Exports write it into tokenizer.json; fine-tuning frames
  its examples with it (objectives/classification.py)."""
  single: str
  pair: str
  padding_side: str = "right"  # where an exported tokenizer pads

  @property
  def token_types(self) -> bool:
    """Whether the input has token types beyond 0 (an export's tokenizer then gives token_type_ids)."""
    return ":" in self.pair


@dataclasses.dataclass(frozen=True)
class Family:
  """What one family owns beyond its model (models/<name>.py defines `FAMILY = Family(...)`)."""
  name: str  # config.model.family
  objective: str  # its pretraining objective (bert_jax/objectives), the one its recipe trains
  converter: str  # the module of its Hugging Face converter (interface: bert_jax/convert/__init__.py)
  # Hugging Face model_type it imports -> the bert_jax.recipes builder of the recipe an import trains with
  hf_types: Mapping[str, str]
  # framing name (the Hugging Face model_type an export writes; objective.framing of fine-tuning) -> its framing
  framings: Mapping[str, Framing]
  framing: str  # the framing its fine-tuning keeps: its pretraining's
  framing_by_packing: Mapping[str, str] = dataclasses.field(default_factory=dict)  # objective.packing -> framing
  # changes to BERT's fine-tuning recipe: finetune(config, pretrained) edits the fine-tuning config in place
  # (bert_jax.recipes.finetune_config); None: BERT's as it is
  finetune: Callable[[Any, Any], None] | None = None
  # objective -> "module:Class" of the transformers model `bench --compare-hf` trains (bert_jax/bench)
  bench_references: Mapping[str, str] = dataclasses.field(default_factory=dict)
  hf_sentinels: int = 0  # T5: the <extra_id_N> an imported tokenizer gets
  hf_eod_ids: tuple[str, ...] = ()  # config.json keys an export sets to the tokenizer's end-of-text id

  def finetune_framing(self, objective: Any) -> str:
    """The framing fine-tuning uses after training with `objective` (config.objective): its pretraining's, or the
    one a fine-tuned model was already trained with."""
    return objective.get("framing", None) or self.framing_by_packing.get(objective.get("packing", ""), self.framing)

