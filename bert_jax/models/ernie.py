"""ERNIE 1.0 (Sun et al. 2019): BERT's post-LN encoder, masked-LM head and NSP head with ReLU, 513 positions and
a Chinese vocabulary of 18,000 (the release's ernie_config.json; LayerNorm epsilon 1e-5, Paddle's default). What
sets ERNIE apart is its knowledge masking (objectives/masking_units.py), not its model.

The modules, parameter layout and task models are BERT's (bert_jax/models/bert.py, used as they are); this family
exists because Hugging Face names the same architecture `ernie` (ErnieModel, use_task_id false as ERNIE 1.0 has no
task-type embeddings), so an export must know to write that type (bert_jax/convert/ernie.py). ALBERT's sharing and
RoBERTa's position offset have no place in an ERNIE checkpoint and are refused.
"""

import dataclasses
from typing import Any

from bert_jax.errors import UserError
from bert_jax.models import bert, shared
from bert_jax.models.family import Family


@dataclasses.dataclass(frozen=True)
class ErnieConfig(bert.BertConfig):
  """ERNIE 1.0 base (ernie-1.0, Chinese): BERT-base with ReLU, V18000 and 513 positions."""
  vocab_size: int = 18000
  max_position: int = 513
  hidden_act: str = "relu"
  layer_norm_eps: float = 1e-5


def make_config(model_cfg: Any) -> ErnieConfig:
  return shared.from_config(ErnieConfig, model_cfg, "ernie")


def validate(cfg: ErnieConfig) -> None:
  bert.validate(cfg)
  if cfg.share != "none" or cfg.embedding_projection or cfg.embedding_size not in (0, cfg.hidden_size):
    raise UserError("an ERNIE model has neither ALBERT's sharing nor its factorized embeddings; set --config.model."
                    "share=none --config.model.embedding_size=0 --config.model.embedding_projection=false")
  if cfg.position_offset or cfg.inner_group_num != 1:
    raise UserError("an ERNIE model counts positions from 0 with one layer a group; set "
                    "--config.model.position_offset=false --config.model.inner_group_num=1")


max_sequence_length = bert.max_sequence_length
build = bert.build
build_encoder = bert.build_encoder
example_inputs = bert.example_inputs
to_layout = bert.to_layout

FAMILY = Family(
    name="ernie", objective="masked_lm", converter="bert_jax.convert.ernie", hf_types={"ernie": "ernie_config"},
    framings={"ernie": bert.FRAMING}, framing="ernie",  # [CLS] A [SEP] B [SEP], as ErnieTokenizer frames a pair
    bench_references={"masked_lm": "bert_jax.bench.torch_encoders:MaskedLM"})
