"""ELECTRA (Clark et al. 2020; google-research/electra): a small masked-LM generator and a discriminator,
trained together, sharing their embeddings.

Both towers are BERT encoders built from bert.py's blocks. As the release with untied_generator_embeddings
False, the word, position and token-type tables and their LayerNorm are one set (`embeddings`, width E =
embedding_size) that both towers read; a tower whose hidden size differs from E projects them first
(`embedding_projection`, HF's `embeddings_project`). The generator is the discriminator scaled by
`generator_size` in hidden size, heads and FFN (the release's generator_hidden_size; its layer count by
`generator_layers`); its MLM head is BERT's (dense to E + activation + LayerNorm, then the tied word
embeddings and a bias). The discriminator's head is dense(D) + activation + dense(1): one logit per token,
"replaced".

Parameter layout (unscanned): embeddings/{word,position,token_type}_embeddings, embeddings/layer_norm,
generator/{embedding_projection, attention_k, ffn_k}, generator_head/{transform, layer_norm, bias},
discriminator/{embedding_projection, attention_k, ffn_k}, discriminator_head/{dense, prediction}. Scanned
towers hold <tower>/layers/{attention, ffn} stacked on a leading `layers` axis (bert.py's layout).

A task model (model.head classification or span, `ElectraForTask`) is the discriminator's encoder with a head
of Hugging Face's ElectraFor{SequenceClassification,QuestionAnswering}: it keeps `embeddings` and
`discriminator` under the same paths, and adds `classifier/{dense, out_proj}` (first token, gelu) or
`qa_outputs`; the generator, its head and the discriminator's head stay behind.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from bert_jax.errors import UserError
from bert_jax.models import attention, bert, heads, layers, shared
from bert_jax.models.family import Family

TOWERS = ("generator", "discriminator")


@dataclasses.dataclass(frozen=True)
class ElectraConfig(shared.Settings):
  """ELECTRA-Small with the paper's 1/4 generator (the release's default model_size); configs/ set the others."""
  vocab_size: int = 30522
  hidden_size: int = 256
  num_layers: int = 12
  num_heads: int = 4
  intermediate_size: int = 1024
  embedding_size: int = 128  # 0: the hidden size (ELECTRA-Base and -Large)
  max_position: int = 512
  type_vocab_size: int = 2
  pad_token_id: int = 0
  hidden_act: str = "gelu"
  dropout: float = 0.1
  attention_dropout: float = 0.1
  layer_norm_eps: float = 1e-12
  initializer_range: float = 0.02
  generator_size: float = 0.25  # generator hidden size, heads and FFN as a fraction of the discriminator's
  generator_layers: float = 1.0  # generator layers as a fraction of the discriminator's

  @property
  def embed_dim(self) -> int:
    return self.embedding_size or self.hidden_size


def make_config(model_cfg: Any) -> ElectraConfig:
  return shared.from_config(ElectraConfig, model_cfg, "electra")


def max_sequence_length(cfg: ElectraConfig) -> int:
  return cfg.max_position


def _tower(cfg: ElectraConfig, hidden: int, heads: int, ffn: int, num_layers: int) -> bert.BertConfig:
  return bert.BertConfig(
      scan_layers=cfg.scan_layers, remat=cfg.remat, dtype=cfg.dtype, attention=cfg.attention,
      vocab_size=cfg.vocab_size, hidden_size=hidden, num_layers=num_layers, num_heads=heads, intermediate_size=ffn,
      embedding_size=cfg.embed_dim, embedding_projection=cfg.embed_dim != hidden, max_position=cfg.max_position,
      type_vocab_size=cfg.type_vocab_size, pad_token_id=cfg.pad_token_id, hidden_act=cfg.hidden_act,
      dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, layer_norm_eps=cfg.layer_norm_eps,
      initializer_range=cfg.initializer_range, pooler=False, sentence_head="none")


def discriminator_config(cfg: ElectraConfig) -> bert.BertConfig:
  return _tower(cfg, cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, cfg.num_layers)


def generator_config(cfg: ElectraConfig) -> bert.BertConfig:
  """The discriminator scaled by generator_size (hidden, heads, FFN; at least 1 head) and generator_layers."""
  scale = lambda n, f: max(1, int(round(n * f)))
  return _tower(cfg, scale(cfg.hidden_size, cfg.generator_size), scale(cfg.num_heads, cfg.generator_size),
                scale(cfg.intermediate_size, cfg.generator_size), scale(cfg.num_layers, cfg.generator_layers))


def validate(cfg: ElectraConfig) -> None:
  shared.check(cfg, ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position",
                     "type_vocab_size"),
               divisible=[("hidden_size", "num_heads")], rates=("dropout", "attention_dropout"),
               choices={"hidden_act": layers.ACTIVATIONS})
  if cfg.embedding_size < 0:
    raise UserError(f"model.embedding_size must be positive (or 0 for the hidden size), got {cfg.embedding_size}")
  for name in ("generator_size", "generator_layers"):
    if not 0.0 < getattr(cfg, name) <= 1.0:
      raise UserError(f"model.{name} must be in (0, 1], got {getattr(cfg, name)}")
  g = generator_config(cfg)
  if g.hidden_size % g.num_heads:
    raise UserError(f"the generator's hidden size {g.hidden_size} (model.hidden_size x model.generator_size) is not "
                    f"divisible by its {g.num_heads} heads; choose a generator_size that keeps them divisible")


class Tower(nn.Module):
  """One encoder over embeddings it is given: the projection to its hidden size (if any), then its layers."""
  cfg: bert.BertConfig
  deterministic: bool

  @nn.compact
  def __call__(self, x_BLE, mask: attention.Mask):
    cfg = self.cfg
    if cfg.embedding_projection:
      x_BLE = layers.dense(cfg.hidden_size, (None, "embed"), cfg.initializer_range, cfg.compute_dtype,
                           "embedding_projection")(x_BLE)
    x_BLD = layers.constrain(x_BLE, ("batch", "length", "embed"))
    if cfg.scan_layers:
      stack = shared.scan(bert.TransformerLayer, cfg, cfg.num_layers, (nn.broadcast,))
      x_BLD, _ = stack(cfg, self.deterministic, name="layers")(x_BLD, mask)
      return x_BLD
    attention_cls, ffn_cls = shared.remat(bert.AttentionBlock, cfg), shared.remat(bert.FeedForwardBlock, cfg)
    for k in range(cfg.num_layers):
      x_BLD = attention_cls(cfg, self.deterministic, name=f"attention_{k}")(x_BLD, mask)
      x_BLD = layers.constrain(ffn_cls(cfg, self.deterministic, name=f"ffn_{k}")(x_BLD), ("batch", "length", "embed"))
    return x_BLD


class DiscriminatorHead(nn.Module):
  """Dense + activation + dense to one logit per token (HF ElectraDiscriminatorPredictions)."""
  cfg: bert.BertConfig

  @nn.compact
  def __call__(self, x_BLD):
    cfg = self.cfg
    h_BLD = layers.dense(cfg.hidden_size, ("embed", "mlp"), cfg.initializer_range, cfg.compute_dtype, "dense")(x_BLD)
    h_BLD = layers.activation(cfg.hidden_act)(h_BLD)
    return layers.dense(1, ("mlp", None), cfg.initializer_range, cfg.compute_dtype, "prediction")(h_BLD)[..., 0]


class ElectraForPreTraining(nn.Module):
  """Generator and discriminator over shared embeddings. `generate` gives the generator's MLM logits at
  masked_positions_BP (or everywhere); `discriminate` the discriminator's per-token logits; calling the module
  runs both on the same input (initialization, parity checks)."""
  cfg: ElectraConfig
  deterministic: bool = True

  def setup(self):
    d, g = discriminator_config(self.cfg), generator_config(self.cfg)
    self.embeddings = bert.Embeddings(d, self.deterministic)
    self.generator = Tower(g, self.deterministic)
    self.generator_head = bert.MaskedLMHead(g)
    self.discriminator = Tower(d, self.deterministic)
    self.discriminator_head = DiscriminatorHead(d)

  def generate(self, input_ids_BL, token_type_ids_BL, attention_mask_BL, masked_positions_BP=None):
    x_BLD = self.generator(self.embeddings(input_ids_BL, token_type_ids_BL), attention.padding(attention_mask_BL))
    if masked_positions_BP is not None:
      x_BLD = jnp.take_along_axis(x_BLD, masked_positions_BP[..., None].astype(jnp.int32), axis=1)
    return self.generator_head(x_BLD, self.embeddings.word_embeddings)

  def discriminate(self, input_ids_BL, token_type_ids_BL, attention_mask_BL):
    x_BLD = self.discriminator(self.embeddings(input_ids_BL, token_type_ids_BL),
                               attention.padding(attention_mask_BL))
    return self.discriminator_head(x_BLD)

  def __call__(self, input_ids_BL, token_type_ids_BL=None, attention_mask_BL=None, masked_positions_BP=None):
    if token_type_ids_BL is None:
      token_type_ids_BL = jnp.zeros_like(input_ids_BL)
    if attention_mask_BL is None:
      attention_mask_BL = jnp.ones_like(input_ids_BL)
    return {"mlm_logits": self.generate(input_ids_BL, token_type_ids_BL, attention_mask_BL, masked_positions_BP),
            "disc_logits": self.discriminate(input_ids_BL, token_type_ids_BL, attention_mask_BL)}


def _discriminator(cfg: ElectraConfig, deterministic: bool, input_ids_BL, token_type_ids_BL, attention_mask_BL):
  """The discriminator's sequence output, from `embeddings` and `discriminator` modules of the calling module."""
  d = discriminator_config(cfg)
  x_BLE = bert.Embeddings(d, deterministic, name="embeddings")(input_ids_BL, token_type_ids_BL)
  return Tower(d, deterministic, name="discriminator")(x_BLE, attention.padding(attention_mask_BL))


class ElectraModel(nn.Module):
  """The discriminator's encoder alone, as HF's ElectraModel (what fine-tuning starts from)."""
  cfg: ElectraConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids_BL, token_type_ids_BL, attention_mask_BL):
    return _discriminator(self.cfg, self.deterministic, input_ids_BL, token_type_ids_BL, attention_mask_BL)


class ElectraForTask(nn.Module):
  """The fine-tuning model: the discriminator's encoder and the head of HF's ElectraForSequenceClassification
  ({"logits": [B, num_labels]}) or ElectraForQuestionAnswering ({"start_logits", "end_logits": [B, L]})."""
  cfg: ElectraConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids_BL, token_type_ids_BL, attention_mask_BL):
    x_BLD = _discriminator(self.cfg, self.deterministic, input_ids_BL, token_type_ids_BL, attention_mask_BL)
    return heads.task_outputs(x_BLD, self.cfg, self.deterministic, "gelu")


def build(cfg: ElectraConfig, deterministic: bool = True) -> ElectraForPreTraining | ElectraForTask:
  return ElectraForPreTraining(cfg, deterministic) if cfg.head == "pretraining" else ElectraForTask(cfg, deterministic)


def build_encoder(cfg: ElectraConfig) -> ElectraModel:
  return ElectraModel(cfg)


def example_inputs(cfg: ElectraConfig, batch: int = 1, length: int = 8) -> dict:
  return bert.example_inputs(cfg, batch, length)


def to_layout(params: dict, cfg: ElectraConfig, scanned: bool) -> dict:
  """Converts a parameter tree between the unscanned and scanned layouts (scanned=True: to scanned)."""
  stacks = {}
  towers = {"generator": generator_config(cfg), "discriminator": discriminator_config(cfg)}
  for tower in TOWERS if cfg.head == "pretraining" else ("discriminator",):  # a task model has no generator
    for b in bert.BLOCKS:
      stacks[f"{tower}/layers/{b}"] = [f"{tower}/{b}_{k}" for k in range(towers[tower].num_layers)]
  return shared.to_layout(params, stacks, scanned)


def finetune(c: Any, pretrained: Any) -> None:
  """ELECTRA's configure_finetuning.py: lr 1e-4 (Base), layer-wise decay 0.8."""
  c.optimizer.update(learning_rate=1e-4, layer_decay=0.8)


FAMILY = Family(
    name="electra", objective="replaced_token_detection", converter="bert_jax.convert.electra",
    hf_types={"electra": "electra_config"}, framings={"electra": bert.FRAMING}, framing="bert", finetune=finetune,
    bench_references={"replaced_token_detection": "bert_jax.bench.torch_encoders:ReplacedTokenDetection"})
