"""SpanBERT (Joshi et al. 2020): BERT's encoder and masked-LM head plus the span-boundary objective (SBO) head.

The encoder and the MLM head are BERT's (bert_jax/models/bert.py, imported as they are), so an encoder
exports as a plain BERT checkpoint. The SBO head follows the release's `BertPairTargetPredictionHead`
(facebookresearch/SpanBERT, pretraining/fairseq/models/pair_bert.py): for each target inside a masked span,
the encodings of the two tokens just outside the span (x_{s-1}, x_{e+1}) and an embedding of the target's
position within the span (`sbo_position_size` wide, `sbo_max_targets` of them) are concatenated, go through
two blocks of dense -> GELU -> LayerNorm (`MLPWithLayerNorm`), and score the vocabulary against the shared
word embeddings plus a bias of the head's own. The release scores every one of the `max_targets` positions of
every span; ours scores only the targets a batch names (the same numbers for the targets that exist).

Parameter layout: BERT's (encoder/..., mlm_head/...) plus sbo_head/{position_embeddings, dense_1, layer_norm_1,
dense_2, layer_norm_2, bias}. A task model (model.head classification or span) is BERT's (bert.BertForTask):
it keeps `encoder` (with a fresh pooler for classification when the pretraining model has none, as Hugging
Face's BertForSequenceClassification on a SpanBERT checkpoint); mlm_head and sbo_head stay behind.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from bert_jax.models import bert, layers, shared
from bert_jax.models.family import Family


@dataclasses.dataclass(frozen=True)
class SpanBertConfig(bert.BertConfig):
  """SpanBERT-base: BERT-base with the release's cased vocabulary, no pooler and no sentence head (no NSP)."""
  vocab_size: int = 28996
  pooler: bool = False
  sentence_head: str = "none"
  sbo_max_targets: int = 15  # the release's --max-pair-targets: targets of a span past it go unscored by the SBO
  sbo_position_size: int = 200  # width of the relative position embedding (--pair-positional-embedding-size)


def make_config(model_cfg: Any) -> SpanBertConfig:
  return shared.from_config(SpanBertConfig, model_cfg, "spanbert")


def encoder_config(cfg: SpanBertConfig) -> bert.BertConfig:
  """The BERT settings of the encoder and MLM head (what a BERT export describes)."""
  names = {f.name for f in dataclasses.fields(bert.BertConfig)}
  return bert.BertConfig(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in names})


def validate(cfg: SpanBertConfig) -> None:
  bert.validate(cfg)
  shared.check(cfg, ("sbo_max_targets", "sbo_position_size"), rates=())


max_sequence_length = bert.max_sequence_length


class SpanBoundaryHead(nn.Module):
  """Logits [B, P, V] for targets at relative positions rel_BP of spans bounded by left_BP and right_BP."""
  cfg: SpanBertConfig

  @nn.compact
  def __call__(self, x_BLD, left_BP, right_BP, rel_BP, word_embeddings: layers.Embed):
    cfg = self.cfg
    dt = cfg.compute_dtype
    gather = lambda index_BP: jnp.take_along_axis(x_BLD, index_BP[..., None].astype(jnp.int32), axis=1)
    positions = layers.Embed(cfg.sbo_max_targets, cfg.sbo_position_size, (None, None), cfg.initializer_range, dt,
                             name="position_embeddings")
    h_BPX = jnp.concatenate([gather(left_BP), gather(right_BP), positions(rel_BP)], axis=-1)

    def block(k, h):  # dense to D -> activation -> LayerNorm, on X (k = 1) or D (k = 2) features
      h_BPD = layers.dense(cfg.hidden_size, (None, "embed"), cfg.initializer_range, dt, f"dense_{k}")(h)
      return layers.layer_norm(cfg.layer_norm_eps, dt, f"layer_norm_{k}")(layers.activation(cfg.hidden_act)(h_BPD))

    h_BPD = block(2, block(1, h_BPX))
    bias_V = self.param("bias", layers.partitioned(nn.initializers.zeros, ("vocab",)), (cfg.vocab_size,),
                        jnp.float32)
    return word_embeddings.attend(h_BPD) + bias_V.astype(dt)


class SpanBertForPreTraining(nn.Module):
  """BERT's encoder and MLM head (logits at masked_positions_BP) and the SBO head (logits at the span targets:
  the positions just outside each target's span and its position within it)."""
  cfg: SpanBertConfig
  deterministic: bool = True

  def setup(self):
    cfg = self.cfg
    self.encoder = bert.BertEncoder(encoder_config(cfg), self.deterministic, with_pooler=cfg.pooler)
    self.mlm_head = bert.MaskedLMHead(encoder_config(cfg))
    self.sbo_head = SpanBoundaryHead(cfg)

  def __call__(self, input_ids_BL, token_type_ids_BL, attention_mask_BL, masked_positions_BP=None, sbo_left_BP=None,
               sbo_right_BP=None, sbo_relative_BP=None):
    x_BLD, pooled_BD = self.encoder(input_ids_BL, token_type_ids_BL, attention_mask_BL)
    if masked_positions_BP is None:  # every position, each token a span of its own for the SBO
      length = input_ids_BL.shape[1]
      masked_positions_BP = jnp.broadcast_to(jnp.arange(length), input_ids_BL.shape)
      sbo_left_BP = jnp.maximum(masked_positions_BP - 1, 0)
      sbo_right_BP = jnp.minimum(masked_positions_BP + 1, length - 1)
      sbo_relative_BP = jnp.zeros_like(masked_positions_BP)
    x_BPD = jnp.take_along_axis(x_BLD, masked_positions_BP[..., None].astype(jnp.int32), axis=1)
    word_embeddings = self.encoder.embeddings.word_embeddings
    return {"sequence_output": x_BLD, "pooled_output": pooled_BD,
            "mlm_logits": self.mlm_head(x_BPD, word_embeddings),
            "sbo_logits": self.sbo_head(x_BLD, sbo_left_BP, sbo_right_BP, sbo_relative_BP, word_embeddings)}


def build(cfg: SpanBertConfig, deterministic: bool = True) -> SpanBertForPreTraining | bert.BertForTask:
  if cfg.head != "pretraining":
    return bert.BertForTask(encoder_config(cfg), deterministic)
  return SpanBertForPreTraining(cfg, deterministic)


def build_encoder(cfg: SpanBertConfig) -> bert.BertEncoder:
  """The bare encoder as Hugging Face's BertModel counts it (with the pooler only where the config has one)."""
  return bert.BertEncoder(encoder_config(cfg), with_pooler=cfg.pooler)


example_inputs = bert.example_inputs


def to_layout(params: dict, cfg: SpanBertConfig, scanned: bool) -> dict:
  return bert.to_layout(params, encoder_config(cfg), scanned)


FAMILY = Family(
    name="spanbert", objective="span_boundary", converter="bert_jax.convert.spanbert",
    hf_types={},  # the published checkpoints are model_type bert: they come in as the bert family
    framings={}, framing="bert",
    bench_references={"span_boundary": "bert_jax.bench.torch_encoders:SpanBoundary"})
