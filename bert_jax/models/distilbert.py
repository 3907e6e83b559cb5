"""DistilBERT (Sanh et al. 2019): BERT's post-LN encoder without token types or pooler, half as deep, trained by
distillation from a BERT teacher (bert_jax/objectives/distillation.py).

The attention and feed-forward blocks and the masked-LM head are BERT's (bert_jax/models/bert.py), with one change
the release makes: no dropout on the attention block's output (Hugging Face's DistilBERT drops out only the
attention weights there). The embeddings are words plus learned positions, then LayerNorm and dropout. LayerNorm eps
is 1e-12 everywhere, as Hugging Face hard-codes it. Token types are taken and ignored, so that the objectives call
DistilBERT as they call BERT.

Parameter layout (unscanned): encoder/{embeddings/{word_embeddings, position_embeddings, layer_norm},
layers_k/{attention, ffn}}, mlm_head/{transform, layer_norm, bias}; scanned: encoder/layers stacks the layers_k.
A task model (model.head) keeps `encoder` and adds `classifier/{dense, out_proj}` (Hugging Face's pre_classifier and
classifier, ReLU between them, on the first token) or `qa_outputs`.

`from_bert` is the release's student initialization (its scripts/distillation/extract_distilbert.py): the embeddings,
every other layer of the teacher and its MLM head (`teacher_layers`).
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from bert_jax.errors import UserError
from bert_jax.models import attention, bert, heads, layers, shared
from bert_jax.models.dropout import Dropout
from bert_jax.models.family import Family, Framing

LAYER_NORM_EPS = 1e-12


@dataclasses.dataclass(frozen=True)
class DistilBertConfig(shared.Settings):
  """distilbert-base-uncased: 6 layers of BERT-base's width, BERT's uncased vocabulary."""
  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 3072
  max_position: int = 512
  pad_token_id: int = 0
  hidden_act: str = "gelu"
  dropout: float = 0.1
  attention_dropout: float = 0.1
  initializer_range: float = 0.02
  classifier_dropout: float = 0.2  # Hugging Face's seq_classif_dropout


def make_config(model_cfg: Any) -> DistilBertConfig:
  return shared.from_config(DistilBertConfig, model_cfg, "distilbert")


def validate(cfg: DistilBertConfig) -> None:
  shared.check(cfg, ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position"),
               divisible=[("hidden_size", "num_heads")], rates=("dropout", "attention_dropout"),
               choices={"hidden_act": layers.ACTIVATIONS})


def max_sequence_length(cfg: DistilBertConfig) -> int:
  return cfg.max_position


def bert_config(cfg: DistilBertConfig) -> bert.BertConfig:
  """The BERT settings of the shared blocks and head: the same sizes, no token types, pooler or sentence head."""
  shared_names = {f.name for f in dataclasses.fields(shared.Settings)}
  same = {k: v for k, v in dataclasses.asdict(cfg).items() if k in shared_names}
  return bert.BertConfig(
      **same, vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
      num_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size, max_position=cfg.max_position,
      type_vocab_size=1, pad_token_id=cfg.pad_token_id, hidden_act=cfg.hidden_act, dropout=cfg.dropout,
      attention_dropout=cfg.attention_dropout, layer_norm_eps=LAYER_NORM_EPS, initializer_range=cfg.initializer_range,
      pooler=False, sentence_head="none")


class TransformerLayer(nn.Module):
  """BERT's attention block (without dropout on its output) and feed-forward block, in nn.scan's (carry, out) form."""
  cfg: DistilBertConfig
  deterministic: bool

  @nn.compact
  def __call__(self, x_BLD, mask: attention.Mask):
    blocks = bert_config(self.cfg)
    x_BLD = bert.AttentionBlock(dataclasses.replace(blocks, dropout=0.0), self.deterministic, name="attention")(
        x_BLD, mask)
    x_BLD = bert.FeedForwardBlock(blocks, self.deterministic, name="ffn")(x_BLD)
    return layers.constrain(x_BLD, ("batch", "length", "embed")), None


class Embeddings(nn.Module):
  cfg: DistilBertConfig
  deterministic: bool

  def setup(self):
    cfg = self.cfg
    embed = lambda n, axes: layers.Embed(n, cfg.hidden_size, axes, cfg.initializer_range, cfg.compute_dtype)
    self.word_embeddings = embed(cfg.vocab_size, ("vocab", "embed"))
    self.position_embeddings = embed(cfg.max_position, (None, "embed"))
    self.layer_norm = layers.layer_norm(LAYER_NORM_EPS, cfg.compute_dtype, "layer_norm")
    self.dropout = Dropout(cfg.dropout)

  def __call__(self, input_ids_BL):
    positions_BL = jnp.broadcast_to(jnp.arange(input_ids_BL.shape[1]), input_ids_BL.shape)
    x_BLD = self.word_embeddings(input_ids_BL) + self.position_embeddings(positions_BL)
    return self.dropout(self.layer_norm(x_BLD), deterministic=self.deterministic)


class DistilBertEncoder(nn.Module):
  """Embeddings and the layer stack; returns the sequence output [B, L, D]."""
  cfg: DistilBertConfig
  deterministic: bool = True

  def setup(self):
    cfg = self.cfg
    self.embeddings = Embeddings(cfg, self.deterministic)
    self.stack = shared.layer_stack(TransformerLayer, cfg, self.deterministic, cfg.num_layers, (nn.broadcast,))

  def __call__(self, input_ids_BL, token_type_ids_BL=None, attention_mask_BL=None):
    if attention_mask_BL is None:
      attention_mask_BL = jnp.ones_like(input_ids_BL)
    x_BLD = layers.constrain(self.embeddings(input_ids_BL), ("batch", "length", "embed"))
    mask = attention.from_attention_mask(attention_mask_BL)
    for layer in self.stack:
      x_BLD, _ = layer(x_BLD, mask)
    return x_BLD


class DistilBertForMaskedLM(nn.Module):
  """The encoder and BERT's masked-LM head (logits only at masked_positions_BP when given)."""
  cfg: DistilBertConfig
  deterministic: bool = True

  def setup(self):
    self.encoder = DistilBertEncoder(self.cfg, self.deterministic)
    self.mlm_head = bert.MaskedLMHead(bert_config(self.cfg))

  def __call__(self, input_ids_BL, token_type_ids_BL=None, attention_mask_BL=None, masked_positions_BP=None):
    x_BLD = self.encoder(input_ids_BL, token_type_ids_BL, attention_mask_BL)
    x_BPD = x_BLD
    if masked_positions_BP is not None:
      x_BPD = jnp.take_along_axis(x_BLD, masked_positions_BP[..., None].astype(jnp.int32), axis=1)
    return {"sequence_output": x_BLD,
            "mlm_logits": self.mlm_head(x_BPD, self.encoder.embeddings.word_embeddings)}


class DistilBertForTask(nn.Module):
  """Hugging Face's DistilBertForSequenceClassification (first token -> pre_classifier -> ReLU -> dropout ->
  classifier: our ClassificationHead without its input dropout) or DistilBertForQuestionAnswering (dropout, then
  qa_outputs)."""
  cfg: DistilBertConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids_BL, token_type_ids_BL=None, attention_mask_BL=None):
    cfg = self.cfg
    x_BLD = DistilBertEncoder(cfg, self.deterministic, name="encoder")(input_ids_BL, None, attention_mask_BL)
    if cfg.head == "span":
      return heads.span_logits(Dropout(cfg.dropout)(x_BLD, deterministic=self.deterministic), cfg)
    head = heads.ClassificationHead(cfg, "relu", self.deterministic, input_dropout=False, name="classifier")
    return {"logits": head(x_BLD[:, 0])}


def build(cfg: DistilBertConfig, deterministic: bool = True) -> DistilBertForMaskedLM | DistilBertForTask:
  if cfg.head == "pretraining":
    return DistilBertForMaskedLM(cfg, deterministic)
  return DistilBertForTask(cfg, deterministic)


def build_encoder(cfg: DistilBertConfig) -> DistilBertEncoder:
  """The bare encoder as Hugging Face's DistilBertModel counts it (no pooler)."""
  return DistilBertEncoder(cfg)


def example_inputs(cfg: shared.Settings, batch: int = 1, length: int = 8) -> dict:
  ids = jnp.ones((batch, length), jnp.int32)
  return {"input_ids_BL": ids, "attention_mask_BL": ids}


def to_layout(params: dict, cfg: DistilBertConfig, scanned: bool) -> dict:
  return shared.to_layout(params, {"encoder/layers": [f"encoder/layers_{k}" for k in range(cfg.num_layers)]},
                          scanned)


def teacher_layers(teacher: int, student: int) -> list[int]:
  """The teacher layer each student layer starts from: spread evenly from the first to the last, rounded to the
  nearest (12 -> 6: 0, 2, 4, 7, 9, 11, the release's choice); one student layer takes the first."""
  if student > teacher:
    raise UserError(f"the student has {student} layers and its teacher {teacher}; give the student at most "
                    f"{teacher} (model.num_layers)")
  if student == 1:
    return [0]
  return [int(np.floor(k * (teacher - 1) / (student - 1) + 0.5)) for k in range(student)]


def from_bert(teacher: dict, cfg: DistilBertConfig, position_offset: int = 0) -> dict:
  """The student's parameters (unscanned) from a BERT teacher's (unscanned, one block per layer, E == D): word and
  position embeddings (the teacher's token type 0 added to every position, the type the student's inputs are; its
  positions from row `position_offset` of its table: RoBERTa's start past the padding id), the embedding LayerNorm,
  the layers `teacher_layers` picks and the MLM head."""
  encoder = teacher["encoder"]
  depth = sum(1 for name in encoder if name.startswith("attention_"))
  if "embedding_projection" in encoder or depth == 0 or f"ffn_{depth - 1}" not in encoder:
    raise UserError("objective.init_from_teacher takes a BERT teacher with a block per layer and no embedding "
                    "projection; set --config.objective.init_from_teacher=false")
  embeddings = encoder["embeddings"]
  positions = embeddings["position_embeddings"]["embedding"][position_offset:position_offset + cfg.max_position]
  if len(positions) < cfg.max_position:
    raise UserError(f"the teacher has {len(positions)} positions and model.max_position is {cfg.max_position}; set "
                    f"--config.model.max_position={len(positions)}")
  positions = positions + embeddings["token_type_embeddings"]["embedding"][0]
  student = {"embeddings": {"word_embeddings": embeddings["word_embeddings"],
                            "position_embeddings": {"embedding": positions},
                            "layer_norm": embeddings["layer_norm"]}}
  for k, t in enumerate(teacher_layers(depth, cfg.num_layers)):
    student[f"layers_{k}"] = {"attention": encoder[f"attention_{t}"], "ffn": encoder[f"ffn_{t}"]}
  return {"encoder": student, "mlm_head": teacher["mlm_head"]}


# [CLS] A [SEP] (B [SEP]): BERT's framing without token types
FAMILY = Family(
    name="distilbert", objective="distillation", converter="bert_jax.convert.distilbert",
    hf_types={"distilbert": "distilbert_config"},
    framings={"distilbert": Framing("{cls} $A {sep}", "{cls} $A {sep} $B {sep}")}, framing="distilbert",
    bench_references={"distillation": "bert_jax.bench.torch_distillation:StudentAlone"})
