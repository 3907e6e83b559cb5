"""BART (Lewis et al. 2020): a post-LN encoder-decoder with learned positions, as transformers'
BartForConditionalGeneration computes it.

Both stacks: token embeddings (shared by encoder, decoder and the output layer; times sqrt(hidden_size) with
scale_embedding, off for bart-base/large) plus learned positions read at index position + 2 (fairseq kept the
first two rows for padding), LayerNorm (`embedding_norm`), dropout, then layers of attention -> dropout ->
residual -> LayerNorm and fc1 -> activation -> activation_dropout -> fc2 -> dropout -> residual -> LayerNorm
(decoder layers add cross-attention after the causal self-attention). Attention has biases and the 1/sqrt(head_dim)
scaling. Logits come from the shared embedding without scaling. transformers adds `final_logits_bias`, a buffer of
zeros that is never trained and not counted as a parameter: it is left out here (convert/bart.py writes it).

Padding: rows are padded on the right; `attention_mask` [B, L] and `decoder_attention_mask` [B, T] are 1 on real
tokens. Positions are 0, 1, ... whatever the padding, as in transformers; `decode` takes the decoder's positions
[B, T] instead where its tokens keep their places in a longer text (MASS's fragment: objectives/mass.py).

Parameter layout (unscanned): token_embedder/embedding, encoder/{position_embedder/embedding, embedding_norm,
layers_k/{self_attention, self_attention_norm, fc1, fc2, final_norm}}, decoder/{position_embedder/embedding,
embedding_norm, layers_k/{self_attention, self_attention_norm, cross_attention, cross_attention_norm, fc1, fc2,
final_norm}}. Attention (attention.SelfAttention): query/key/value kernels [embed, heads, kv], out [heads, kv, embed].
With scan_layers the layers_k subtrees stack on a leading `layers` axis under `layers`; `to_layout` converts.

A task model (model.head classification or span, `BartForTask`) keeps these names and reads the text through both
stacks as BartForSequenceClassification / BartForQuestionAnswering do (fairseq's sentence_prediction with
--add-prev-output-tokens): the encoder reads the framed text, the decoder the same text shifted right behind
</s>. Classification: the decoder state at each row's last </s> -> `heads.ClassificationHead` (dropout, dense,
tanh, dropout, out_proj; `classifier`), its dropout model.classifier_dropout (fairseq's pooler_dropout, 0). Span:
`qa_outputs` on every decoder state.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from bert_jax.errors import UserError
from bert_jax.models import attention, heads, layers, shared
from bert_jax.models.dropout import Dropout
from bert_jax.models.family import Family, Framing

POSITION_OFFSET = 2  # fairseq's learned positions start after two rows kept for padding


@dataclasses.dataclass(frozen=True)
class BartConfig(shared.Settings):
  """bart-large (transformers' BartConfig defaults); bart-base and tiny override it (configs/)."""
  vocab_size: int = 50265
  hidden_size: int = 1024
  num_layers: int = 12
  num_decoder_layers: int = 12
  num_heads: int = 16
  num_decoder_heads: int = 16
  intermediate_size: int = 4096
  decoder_intermediate_size: int = 4096
  max_position: int = 1024
  hidden_act: str = "gelu"  # exact erf GELU
  dropout: float = 0.1
  attention_dropout: float = 0.0
  activation_dropout: float = 0.0
  initializer_range: float = 0.02
  scale_embedding: bool = False  # token embeddings times sqrt(hidden_size)
  layer_norm_eps: float = 1e-5
  pad_token_id: int = 1
  bos_token_id: int = 0  # <s>, first token of every target
  eos_token_id: int = 2  # </s>, last token of every target and the decoder's start token
  classifier_dropout: float = 0.0  # fairseq's pooler_dropout and transformers' classifier_dropout
  FORMER_NAMES = {  # before issue 35 (transformers' names, which config.json of an older run holds)
      "d_model": "hidden_size", "encoder_attention_heads": "num_heads", "decoder_attention_heads": "num_decoder_heads",
      "encoder_ffn_dim": "intermediate_size", "decoder_ffn_dim": "decoder_intermediate_size",
      "max_position_embeddings": "max_position", "activation_function": "hidden_act", "init_std": "initializer_range"}


def make_config(model_cfg: Any) -> BartConfig:
  return shared.from_config(BartConfig, model_cfg, "bart")


def validate(cfg: BartConfig) -> None:
  shared.check(cfg, ("vocab_size", "hidden_size", "num_layers", "num_decoder_layers", "num_heads",
                     "num_decoder_heads", "intermediate_size", "decoder_intermediate_size", "max_position"),
               divisible=(("hidden_size", "num_heads"), ("hidden_size", "num_decoder_heads")),
               rates=("dropout", "attention_dropout", "activation_dropout"),
               choices={"hidden_act": layers.ACTIVATIONS})
  for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
    if not 0 <= getattr(cfg, name) < cfg.vocab_size:
      raise UserError(f"model.{name}={getattr(cfg, name)} must be an id below model.vocab_size={cfg.vocab_size}")


def max_sequence_length(cfg: BartConfig) -> int:
  return cfg.max_position


class Layer(nn.Module):
  """One post-LN layer: self-attention (causal in the decoder), cross-attention (decoder), feed-forward."""
  cfg: BartConfig
  deterministic: bool
  decoder: bool = False

  @nn.compact
  def __call__(self, x_BLD, self_mask: attention.Mask, encoded_BSD=None, cross_mask: attention.Mask | None = None):
    cfg = self.cfg
    heads = cfg.num_decoder_heads if self.decoder else cfg.num_heads
    ffn_dim = cfg.decoder_intermediate_size if self.decoder else cfg.intermediate_size
    dropout = lambda y, rate=cfg.dropout: Dropout(rate)(y, deterministic=self.deterministic)
    norm = lambda name: layers.layer_norm(cfg.layer_norm_eps, cfg.compute_dtype, name)

    def attend(name, x_BLD, mask, memory_BSD=None):
      block = attention.SelfAttention(heads, cfg.hidden_size // heads, cfg.attention_dropout, cfg.initializer_range,
                                      cfg.compute_dtype, cfg.attention, name=name)
      return norm(f"{name}_norm")(x_BLD + dropout(block(x_BLD, mask, self.deterministic, memory_BSD)))

    x_BLD = attend("self_attention", x_BLD, self_mask)
    if self.decoder:
      x_BLD = attend("cross_attention", x_BLD, cross_mask, encoded_BSD)
    h_BLF = layers.dense(ffn_dim, ("embed", "mlp"), cfg.initializer_range, cfg.compute_dtype, "fc1")(x_BLD)
    h_BLF = layers.constrain(layers.activation(cfg.hidden_act)(h_BLF), ("batch", "length", "mlp"))
    h_BLF = dropout(h_BLF, cfg.activation_dropout)
    h_BLD = dropout(layers.dense(cfg.hidden_size, ("mlp", "embed"), cfg.initializer_range, cfg.compute_dtype,
                                 "fc2")(h_BLF))
    return layers.constrain(norm("final_norm")(x_BLD + h_BLD), ("batch", "length", "embed")), None


class EncoderLayer(Layer):
  decoder: bool = False


class DecoderLayer(Layer):
  decoder: bool = True


class Stack(nn.Module):
  """Embeddings (tokens from the shared table, learned positions), their LayerNorm, then the layers."""
  cfg: BartConfig
  deterministic: bool
  decoder: bool

  @nn.compact
  def __call__(self, tokens_BL, token_embedder: layers.Embed, self_mask: attention.Mask, encoded_BSD=None,
               cross_mask: attention.Mask | None = None, positions_BL=None):
    cfg = self.cfg
    positions_BL = jnp.arange(tokens_BL.shape[1])[None] if positions_BL is None else positions_BL
    positions = layers.Embed(cfg.max_position + POSITION_OFFSET, cfg.hidden_size, (None, "embed"),
                             cfg.initializer_range, cfg.compute_dtype, name="position_embedder")
    scale = cfg.hidden_size ** 0.5 if cfg.scale_embedding else 1.0
    x_BLD = token_embedder(tokens_BL) * scale + positions(positions_BL + POSITION_OFFSET)
    x_BLD = layers.layer_norm(cfg.layer_norm_eps, cfg.compute_dtype, "embedding_norm")(x_BLD)
    x_BLD = Dropout(cfg.dropout)(layers.constrain(x_BLD, ("batch", "length", "embed")),
                                 deterministic=self.deterministic)
    if self.decoder:
      stack = shared.layer_stack(DecoderLayer, cfg, self.deterministic, cfg.num_decoder_layers, (nn.broadcast,) * 3)
      extra: tuple[Any, ...] = (encoded_BSD, cross_mask)
    else:
      stack = shared.layer_stack(EncoderLayer, cfg, self.deterministic, cfg.num_layers, (nn.broadcast,))
      extra = ()
    for layer in stack:
      x_BLD, _ = layer(x_BLD, self_mask, *extra)
    return x_BLD


class Bart(nn.Module):
  """The encoder-decoder; `__call__` gives decoder logits [B, T, vocab]. Masks default to no padding."""
  cfg: BartConfig
  deterministic: bool = True

  def setup(self):
    self.token_embedder, self.encoder, self.decoder = _modules(self.cfg, self.deterministic)

  def encode(self, input_ids, attention_mask=None):
    return _encode(self.encoder, self.token_embedder, input_ids, attention_mask)

  def decode(self, encoded_BSD, decoder_input_ids, attention_mask=None, decoder_attention_mask=None,
             decoder_positions=None):
    y_BTD = _decode(self.decoder, self.token_embedder, encoded_BSD, decoder_input_ids, attention_mask,
                    decoder_attention_mask, decoder_positions)
    return self.token_embedder.attend(y_BTD)

  def __call__(self, input_ids, decoder_input_ids, attention_mask=None, decoder_attention_mask=None):
    encoded_BSD = self.encode(input_ids, attention_mask)
    return self.decode(encoded_BSD, decoder_input_ids, attention_mask, decoder_attention_mask)


class BartForTask(nn.Module):
  """The fine-tuning model ({"logits": [B, num_labels]} or {"start_logits", "end_logits": [B, L]}); see the module
  docstring. `token_type_ids_BL` is accepted and unused (BART has no token types)."""
  cfg: BartConfig
  deterministic: bool = True

  def setup(self):
    cfg = self.cfg
    self.token_embedder, self.encoder, self.decoder = _modules(cfg, self.deterministic)
    if cfg.head == "span":
      self.qa_outputs = layers.dense(2, ("embed", None), cfg.initializer_range, cfg.compute_dtype, None)
    else:
      self.classifier = heads.ClassificationHead(cfg, "tanh", self.deterministic)

  def __call__(self, input_ids_BL, token_type_ids_BL=None, attention_mask_BL=None):
    cfg = self.cfg
    start_B1 = jnp.full_like(input_ids_BL[:, :1], cfg.eos_token_id)
    decoder_input_ids_BL = jnp.concatenate([start_B1, input_ids_BL[:, :-1]], axis=1)
    encoded_BLD = _encode(self.encoder, self.token_embedder, input_ids_BL, attention_mask_BL)
    y_BLD = _decode(self.decoder, self.token_embedder, encoded_BLD, decoder_input_ids_BL, attention_mask_BL)
    if cfg.head == "span":
      logits_BL2 = self.qa_outputs(y_BLD).astype(jnp.float32)
      return {"start_logits": logits_BL2[..., 0], "end_logits": logits_BL2[..., 1]}
    return {"logits": self.classifier(heads.state_at_last(y_BLD, input_ids_BL == cfg.eos_token_id))}


def _modules(cfg: BartConfig, deterministic: bool) -> tuple[layers.Embed, "Stack", "Stack"]:
  """The shared token table, the encoder and the decoder, for a module's setup to name."""
  return (layers.Embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"), cfg.initializer_range, cfg.compute_dtype),
          Stack(cfg, deterministic, decoder=False), Stack(cfg, deterministic, decoder=True))


def _encode(encoder: Stack, token_embedder: layers.Embed, input_ids, attention_mask=None):
  return encoder(input_ids, token_embedder, attention.padding(_mask(input_ids, attention_mask)))


def _decode(decoder: Stack, token_embedder: layers.Embed, encoded_BSD, decoder_input_ids, attention_mask=None,
            decoder_attention_mask=None, decoder_positions=None):
  """The decoder's last states [B, T, D]: causal self-attention over the unpadded targets, cross-attention over the
  encoder's positions that attention_mask marks (its unpadded ones); positions 0, 1, ... unless given [B, T]."""
  self_mask = attention.Mask(key_BS=_mask(decoder_input_ids, decoder_attention_mask), causal=True)
  cross_mask = attention.padding(_mask(encoded_BSD[..., 0], attention_mask))
  return decoder(decoder_input_ids, token_embedder, self_mask, encoded_BSD, cross_mask, decoder_positions)


def _mask(tokens, mask):
  return jnp.ones(tokens.shape, jnp.int32) if mask is None else mask


def build(cfg: BartConfig, deterministic: bool = True) -> Bart | BartForTask:
  return Bart(cfg, deterministic) if cfg.head == "pretraining" else BartForTask(cfg, deterministic)


def build_encoder(cfg: BartConfig) -> None:
  """BART's published counts are for the whole encoder-decoder (BartModel, which the LM head adds nothing to)."""


def example_inputs(cfg: BartConfig, batch: int = 1, length: int = 8) -> dict:
  ids = jnp.ones((batch, length), jnp.int32)
  if cfg.head != "pretraining":
    return {"input_ids_BL": ids, "token_type_ids_BL": jnp.zeros_like(ids), "attention_mask_BL": ids}
  return {"input_ids": ids, "decoder_input_ids": ids}


def to_layout(params: dict, cfg: BartConfig, scanned: bool) -> dict:
  """Converts a parameter tree between the unscanned (layers_k) and scanned (layers) layouts."""
  stacks = {f"{stack}/layers": [f"{stack}/layers_{k}" for k in range(n)]
            for stack, n in (("encoder", cfg.num_layers), ("decoder", cfg.num_decoder_layers))}
  return shared.to_layout(params, stacks, scanned)


# fairseq's BART GLUE recipe (examples/bart/README.glue.md): lr and batch by task; others take RTE's.
GLUE = {"mnli": (5e-6, 128), "qnli": (1e-5, 32), "qqp": (1e-5, 32), "rte": (1e-5, 32), "sst2": (5e-6, 128),
        "mrpc": (2e-5, 64), "cola": (2e-5, 64), "stsb": (2e-5, 32)}


def finetune(c: Any, pretrained: Any) -> None:
  """fairseq's BART GLUE recipe: Adam betas 0.9/0.98, eps 1e-8, decay 0.01, no clipping, 10 epochs, warm-up over 6%
  then linear decay, lr and batch by task (GLUE), attention dropout 0.1."""
  if c.task.name == "squad":
    return
  learning_rate, batch_size = GLUE.get(c.task.name.split("/")[-1], GLUE["rte"])
  c.optimizer.update(learning_rate=learning_rate, b2=0.98, eps=1e-8)
  c.train.update(batch_size=batch_size, clip_norm=0.0)
  c.task.update(epochs=10.0, warmup_proportion=0.06)
  c.model.update(attention_dropout=0.1)


FAMILY = Family(
    name="bart", objective="text_infilling", converter="bert_jax.convert.bart", hf_types={"bart": "bart_config"},
    # <s> A </s> (text_infilling's blocks); a pair as fairseq's GLUE preprocessing and BARTHubInterface.encode, one
    # </s> between (transformers' tokenizer puts </s></s>), token type 0
    framings={"bart": Framing("{cls} $A {eos}", "{cls} $A {eos} $B {eos}")}, framing="bart", finetune=finetune,
    bench_references={"text_infilling": "bert_jax.bench.torch_generative:TextInfilling"})
