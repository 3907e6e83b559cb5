"""BERT, RoBERTa and ALBERT: one post-LN encoder with factorized embeddings and cross-layer sharing.

BERT is the case E == D without projection and nothing shared; RoBERTa changes the embedding
conventions (positions offset past the padding id, one segment type) and drops NSP; ALBERT
factorizes the embeddings (E -> D projection) and shares layers within `num_hidden_groups` groups
(`share`: all, attention, ffn or none, the ALBERT paper's ablation).

Parameter layout (unscanned): encoder/{embeddings, embedding_projection, attention_k, ffn_k, pooler},
mlm_head/{transform, layer_norm, bias}, sentence_head, fit_dense (TinyBERT's, with model.fit_size). k is the owner
index of a block: the group's index when the block is shared, the layer's index when it is not. Scanned layers keep
the same leaves stacked on a leading `layers` axis (share=none: encoder/layers/{attention,ffn}) or broadcast
(share=all: encoder/layers_g/{attention,ffn}); `to_layout` converts between the two. Applied with the
"intermediates" collection mutable, an unscanned encoder sows `hidden_states` (the embeddings' output and each
layer's) and its attention blocks their `scores` (TinyBERT's distillation reads them).

A task model (model.head classification or span, `BertForTask`) keeps the pretraining model's `encoder`
subtree under the same paths; mlm_head and sentence_head stay behind. It adds `classifier` ({kernel, bias} on
the pooled output with classifier=pooler, BERT and ALBERT; {dense, out_proj} on the first token with
classifier=roberta) or `qa_outputs` (span). Pooler-classification has encoder/pooler (fresh when the
pretraining model has none, as Hugging Face's); a span model has no pooler.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from bert_jax.errors import UserError
from bert_jax.models import attention, heads, layers, shared
from bert_jax.models.dropout import Dropout
from bert_jax.models.family import Family, Framing

SHARE_MODES = ("none", "all", "attention", "ffn")
CLASSIFIERS = ("pooler", "roberta")
SENTENCE_HEADS = ("nsp", "sop", "none")
BLOCKS = ("attention", "ffn")


@dataclasses.dataclass(frozen=True)
class BertConfig(shared.Settings):
  """BERT-base; RoBERTa, ALBERT and the other sizes override it (bert_jax/recipes/pretraining.py, configs/)."""
  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  embedding_size: int = 0  # 0: the hidden size (BERT); ALBERT factorizes with E < D
  embedding_projection: bool = False  # ALBERT always projects E -> D, even when E == D
  max_position: int = 512
  type_vocab_size: int = 2
  position_offset: bool = False  # RoBERTa: positions count from pad_token_id + 1, padding sits at pad_token_id
  pad_token_id: int = 0
  num_hidden_groups: int = 1
  inner_group_num: int = 1
  share: str = "none"
  hidden_act: str = "gelu"
  dropout: float = 0.1
  attention_dropout: float = 0.1
  layer_norm_eps: float = 1e-12
  initializer_range: float = 0.02
  pooler: bool = True
  sentence_head: str = "nsp"  # nsp, sop or none
  classifier: str = "pooler"  # head=classification: pooler (BERT, ALBERT) or roberta (first token, dense, tanh)
  fit_size: int = 0  # TinyBERT: a `fit_dense` projection D -> fit_size beside the encoder (its teacher's width)

  @property
  def embed_dim(self) -> int:
    return self.embedding_size or self.hidden_size


def make_config(model_cfg: Any) -> BertConfig:
  return shared.from_config(BertConfig, model_cfg, "bert")


def max_sequence_length(cfg: BertConfig) -> int:
  """Positions a sequence may fill: with position_offset (RoBERTa) they start at pad_token_id + 1."""
  return cfg.max_position - (cfg.pad_token_id + 1 if cfg.position_offset else 0)


def validate(cfg: BertConfig) -> None:
  shared.check(cfg, ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position",
                     "type_vocab_size", "num_hidden_groups", "inner_group_num"),
               divisible=[("hidden_size", "num_heads")], rates=("dropout", "attention_dropout"),
               choices={"share": SHARE_MODES, "sentence_head": SENTENCE_HEADS, "hidden_act": layers.ACTIVATIONS,
                        "classifier": CLASSIFIERS})
  if cfg.fit_size < 0:
    raise UserError(f"model.fit_size must be positive (or 0 for no TinyBERT projection), got {cfg.fit_size}")
  if cfg.embedding_size < 0:
    raise UserError(f"model.embedding_size must be positive (or 0 for the hidden size), got {cfg.embedding_size}")
  if cfg.num_layers % cfg.num_hidden_groups:
    raise UserError(f"model.num_hidden_groups={cfg.num_hidden_groups} does not divide "
                    f"model.num_layers={cfg.num_layers}")
  if cfg.scan_layers and not (cfg.share == "none" or (cfg.share == "all" and cfg.inner_group_num == 1)):
    raise UserError("model.scan_layers works with share=none, or share=all with inner_group_num=1; "
                    f"set --config.model.scan_layers=False for share={cfg.share}")


class AttentionBlock(nn.Module):
  """Self-attention, dropout, residual, LayerNorm (post-LN)."""
  cfg: BertConfig
  deterministic: bool

  @nn.compact
  def __call__(self, x_BLD, mask: attention.Mask):
    cfg = self.cfg
    y_BLD = attention.SelfAttention(
        cfg.num_heads, cfg.hidden_size // cfg.num_heads, cfg.attention_dropout, cfg.initializer_range,
        cfg.compute_dtype, cfg.attention, name="self")(x_BLD, mask, self.deterministic)
    y_BLD = Dropout(cfg.dropout)(y_BLD, deterministic=self.deterministic)
    return layers.layer_norm(cfg.layer_norm_eps, cfg.compute_dtype, "layer_norm")(x_BLD + y_BLD)


class FeedForwardBlock(layers.PostLNFeedForward):
  """Dense up, activation, dense down, dropout, residual, LayerNorm (post-LN)."""


class TransformerLayer(nn.Module):
  """One attention block and one feed-forward block, in the (carry, out) form nn.scan wants."""
  cfg: BertConfig
  deterministic: bool

  @nn.compact
  def __call__(self, x_BLD, mask: attention.Mask):
    x_BLD = AttentionBlock(self.cfg, self.deterministic, name="attention")(x_BLD, mask)
    x_BLD = FeedForwardBlock(self.cfg, self.deterministic, name="ffn")(x_BLD)
    return layers.constrain(x_BLD, ("batch", "length", "embed")), None


def owners(cfg: BertConfig) -> list[tuple[int, int]]:
  """For each layer application, in order: (attention owner, ffn owner) block indices."""
  reps = cfg.num_layers // cfg.num_hidden_groups
  result = []
  for k in range(cfg.num_layers):
    group = k // reps
    for i in range(cfg.inner_group_num):
      shared, own = group * cfg.inner_group_num + i, k * cfg.inner_group_num + i
      result.append((shared if cfg.share in ("all", "attention") else own,
                     shared if cfg.share in ("all", "ffn") else own))
  return result


class Embeddings(nn.Module):
  cfg: BertConfig
  deterministic: bool

  def setup(self):
    cfg = self.cfg
    embed = lambda n, axes: layers.Embed(n, cfg.embed_dim, axes, cfg.initializer_range, cfg.compute_dtype)
    self.word_embeddings = embed(cfg.vocab_size, ("vocab", "embed"))
    self.position_embeddings = embed(cfg.max_position, (None, "embed"))
    self.token_type_embeddings = embed(cfg.type_vocab_size, (None, "embed"))
    self.layer_norm = layers.layer_norm(cfg.layer_norm_eps, cfg.compute_dtype, "layer_norm")
    self.dropout = Dropout(cfg.dropout)

  def __call__(self, input_ids_BL, token_type_ids_BL):
    cfg = self.cfg
    if cfg.position_offset:
      not_pad_BL = (input_ids_BL != cfg.pad_token_id).astype(jnp.int32)
      positions_BL = jnp.cumsum(not_pad_BL, axis=1) * not_pad_BL + cfg.pad_token_id
    else:
      positions_BL = jnp.broadcast_to(jnp.arange(input_ids_BL.shape[1]), input_ids_BL.shape)
    x_BLE = (self.word_embeddings(input_ids_BL) + self.position_embeddings(positions_BL)
             + self.token_type_embeddings(token_type_ids_BL))
    return self.dropout(self.layer_norm(x_BLE), deterministic=self.deterministic)


class BertEncoder(nn.Module):
  """Embeddings, the layer stack and (optionally) the pooler; returns (sequence_output, pooled_output)."""
  cfg: BertConfig
  deterministic: bool = True
  with_pooler: bool = True

  def setup(self):
    cfg = self.cfg
    self.embeddings = Embeddings(cfg, self.deterministic)
    if cfg.embedding_projection:
      self.embedding_projection = layers.dense(cfg.hidden_size, (None, "embed"), cfg.initializer_range,
                                               cfg.compute_dtype, "embedding_projection")
    if cfg.scan_layers:
      self.stacks = self._scanned_stacks()
    else:
      attention_cls = shared.remat(AttentionBlock, cfg)
      ffn_cls = shared.remat(FeedForwardBlock, cfg)
      order = owners(cfg)
      self.attention_blocks = {a: attention_cls(cfg, self.deterministic, name=f"attention_{a}")
                               for a in sorted({a for a, _ in order})}
      self.ffn_blocks = {f: ffn_cls(cfg, self.deterministic, name=f"ffn_{f}") for f in sorted({f for _, f in order})}
    if self.with_pooler:
      self.pooler = layers.dense(cfg.hidden_size, ("embed", None), cfg.initializer_range, cfg.compute_dtype,
                                 "pooler")

  def _scanned_stacks(self):
    cfg = self.cfg
    if cfg.share == "none":
      stack = shared.scan(TransformerLayer, cfg, cfg.num_layers * cfg.inner_group_num, (nn.broadcast,))
      return [stack(cfg, self.deterministic, name="layers")]
    stack = shared.scan(TransformerLayer, cfg, cfg.num_layers // cfg.num_hidden_groups, (nn.broadcast,),
                        broadcast_params=True)  # share=all: each group's one layer, applied num_layers/G times
    return [stack(cfg, self.deterministic, name=f"layers_{g}") for g in range(cfg.num_hidden_groups)]

  def __call__(self, input_ids_BL, token_type_ids_BL, attention_mask_BL):
    x_BLD = self.embeddings(input_ids_BL, token_type_ids_BL)
    if self.cfg.embedding_projection:
      x_BLD = self.embedding_projection(x_BLD)
    x_BLD = layers.constrain(x_BLD, ("batch", "length", "embed"))
    mask = attention.from_attention_mask(attention_mask_BL)  # [B, L] padding, or a full [B, L, L] mask (UniLM)
    if self.cfg.scan_layers:
      for stack in self.stacks:
        x_BLD, _ = stack(x_BLD, mask)
    else:
      self.sow("intermediates", "hidden_states", x_BLD)  # kept only when "intermediates" is mutable (TinyBERT)
      for a, f in owners(self.cfg):
        x_BLD = self.attention_blocks[a](x_BLD, mask)
        x_BLD = layers.constrain(self.ffn_blocks[f](x_BLD), ("batch", "length", "embed"))
        self.sow("intermediates", "hidden_states", x_BLD)
    pooled_BD = jnp.tanh(self.pooler(x_BLD[:, 0])) if self.with_pooler else None
    return x_BLD, pooled_BD


class MaskedLMHead(nn.Module):
  """Dense + activation + LayerNorm to the embedding size, then the tied word embeddings and a bias."""
  cfg: BertConfig

  @nn.compact
  def __call__(self, x_BPD, word_embeddings: layers.Embed):
    cfg = self.cfg
    h_BPE = layers.dense(cfg.embed_dim, ("embed", None), cfg.initializer_range, cfg.compute_dtype,
                         "transform")(x_BPD)
    h_BPE = layers.layer_norm(cfg.layer_norm_eps, cfg.compute_dtype, "layer_norm")(
        layers.activation(cfg.hidden_act)(h_BPE))
    bias_V = self.param("bias", layers.partitioned(nn.initializers.zeros, ("vocab",)), (cfg.vocab_size,),
                        jnp.float32)
    return word_embeddings.attend(h_BPE) + bias_V.astype(cfg.compute_dtype)


class BertForPreTraining(nn.Module):
  """The pretraining model: encoder, masked-LM head, and NSP/SOP head when configured.

  `masked_positions_BP`, when given, computes MLM logits only at those positions (as the original
  BERT does), which saves the [B, L, V] projection. `attention_mask_BL` is a [B, L] padding mask (1 = a real token)
  or a full self-attention mask [B, L, L] (1 = the query may see the key: UniLM's masks, objectives/unilm.py).
  """
  cfg: BertConfig
  deterministic: bool = True

  def setup(self):
    cfg = self.cfg
    self.encoder = BertEncoder(cfg, self.deterministic, with_pooler=cfg.pooler)
    self.mlm_head = MaskedLMHead(cfg)
    if cfg.sentence_head != "none":
      self.sentence_head = layers.dense(2, ("embed", None), cfg.initializer_range, cfg.compute_dtype,
                                        "sentence_head")
    if cfg.fit_size:
      self.fit_dense = fit_dense(cfg)

  def __call__(self, input_ids_BL, token_type_ids_BL=None, attention_mask_BL=None, masked_positions_BP=None):
    if token_type_ids_BL is None:
      token_type_ids_BL = jnp.zeros_like(input_ids_BL)
    if attention_mask_BL is None:
      attention_mask_BL = jnp.ones_like(input_ids_BL)
    x_BLD, pooled_BD = self.encoder(input_ids_BL, token_type_ids_BL, attention_mask_BL)
    if masked_positions_BP is not None:
      x_BPD = jnp.take_along_axis(x_BLD, masked_positions_BP[..., None].astype(jnp.int32), axis=1)
    else:
      x_BPD = x_BLD
    outputs = {"sequence_output": x_BLD, "pooled_output": pooled_BD,
               "mlm_logits": self.mlm_head(x_BPD, self.encoder.embeddings.word_embeddings)}
    if self.cfg.sentence_head != "none":
      outputs["sentence_logits"] = self.sentence_head(pooled_BD)
    if self.cfg.fit_size and self.is_initializing():
      self.fit_dense(x_BLD)
    return outputs


class BertForTask(nn.Module):
  """The fine-tuning model: the encoder and the head of Hugging Face's Bert/Albert/Roberta ForSequenceClassification
  ({"logits": [B, num_labels]}) or ForQuestionAnswering ({"start_logits", "end_logits": [B, L]})."""
  cfg: BertConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids_BL, token_type_ids_BL, attention_mask_BL):
    cfg = self.cfg
    pooled = cfg.head == "classification" and cfg.classifier == "pooler"
    x_BLD, pooled_BD = BertEncoder(cfg, self.deterministic, with_pooler=pooled, name="encoder")(
        input_ids_BL, token_type_ids_BL, attention_mask_BL)
    if cfg.fit_size and self.is_initializing():
      fit_dense(cfg)(x_BLD)
    if not pooled:
      return heads.task_outputs(x_BLD, cfg, self.deterministic, "tanh")
    h_BD = Dropout(cfg.head_dropout)(pooled_BD, deterministic=self.deterministic)
    logits_BC = layers.dense(cfg.num_labels, ("embed", None), cfg.initializer_range, cfg.compute_dtype,
                             "classifier")(h_BD)
    return {"logits": logits_BC.astype(jnp.float32)}


def fit_dense(cfg: BertConfig) -> nn.Dense:
  """TinyBERT's projection of the student's hidden states to its teacher's width (fit_size), trained with the
  student by its distillation (objectives/tinybert_losses.py applies it) and left out of the export. The models
  create it at init beside the encoder (params["fit_dense"]) and never call it themselves."""
  return layers.dense(cfg.fit_size, ("embed", None), cfg.initializer_range, cfg.compute_dtype, "fit_dense")


def build(cfg: BertConfig, deterministic: bool = True) -> BertForPreTraining | BertForTask:
  return BertForPreTraining(cfg, deterministic) if cfg.head == "pretraining" else BertForTask(cfg, deterministic)


def build_encoder(cfg: BertConfig) -> BertEncoder:
  """The bare encoder as Hugging Face counts it (BertModel/AlbertModel/RobertaModel: with pooler)."""
  return BertEncoder(cfg, with_pooler=True)


def example_inputs(cfg: shared.Settings, batch: int = 1, length: int = 8) -> dict:
  ids = jnp.ones((batch, length), jnp.int32)
  return {"input_ids_BL": ids, "token_type_ids_BL": jnp.zeros_like(ids), "attention_mask_BL": ids}


def to_layout(params: dict, cfg: BertConfig, scanned: bool) -> dict:
  """Converts a parameter tree between the unscanned and scanned layouts (scanned=True: to scanned)."""
  stacks: dict[str, list[str] | str]
  if cfg.share == "none":
    n = cfg.num_layers * cfg.inner_group_num
    stacks = {f"encoder/layers/{b}": [f"encoder/{b}_{k}" for k in range(n)] for b in BLOCKS}
  else:  # one layer per group, broadcast over its repeats
    stacks = {f"encoder/layers_{g}/{b}": f"encoder/{b}_{g}" for g in range(cfg.num_hidden_groups) for b in BLOCKS}
  return shared.to_layout(params, stacks, scanned)


# [CLS] A [SEP] B [SEP] with token types 0 and 1 (BERT, ALBERT, and the encoders pretrained like them)
FRAMING = Framing("{cls} $A {sep}", "{cls} $A {sep} $B:1 {sep}:1")
FAMILY = Family(
    name="bert", objective="masked_lm", converter="bert_jax.convert.bert",
    hf_types={"bert": "bert_config", "roberta": "roberta_config", "albert": "albert_config"},
    framings={"bert": FRAMING, "albert": FRAMING,
              "roberta": Framing("{cls} $A {sep}", "{cls} $A {sep} {sep} $B {sep}")},  # <s> A </s></s> B </s>, type 0
    framing="bert", framing_by_packing={"full_sentences": "roberta"},  # RoBERTa's full sentences
    bench_references={"masked_lm": "bert_jax.bench.torch_encoders:MaskedLM",
                      "unilm": "bert_jax.bench.torch_encoders:UniLM"})
