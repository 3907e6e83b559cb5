"""transformers references of the encoder objectives for `bert-jax bench --compare-hf` (the protocol:
torch_reference.py): masked LM (BERT, RoBERTa, ALBERT), UniLM, SpanBERT's span boundary and ELECTRA's replaced-token
detection, each the export of our parameters in the model its hf_config names, with our loss computed from its
logits. torch and transformers are imported inside methods only, JAX never (this runs in the PyTorch worker).
"""

from typing import Any

import numpy as np

from bert_jax.bench import torch_reference
from bert_jax.errors import UserError

# objectives/unilm.py's constants (that module imports JAX); tests/test_bench_encoders.py checks they agree.
UNILM_PROPORTIONS = (1 / 3, 1 / 3, 1 / 6, 1 / 6)  # bidirectional, seq2seq, left_to_right, right_to_left
UNILM_LM_SEGMENTS = ((0, 1), (4, 5), (2, 2), (3, 3))


def mlm_labels(batch: dict) -> np.ndarray:
  """[B, L] int64: masked_ids at the weighted masked positions, -100 (ignored) elsewhere."""
  labels = np.full(batch["input_ids"].shape, -100, np.int64)
  rows, slots = np.nonzero(batch["masked_weights"])
  labels[rows, batch["masked_positions"][rows, slots]] = batch["masked_ids"][rows, slots]
  return labels


def long_tensors(batch: dict, names: tuple[str, ...]) -> dict:
  import torch

  return {name: torch.from_numpy(np.asarray(batch[name], np.int64)) for name in names}


def mean_nll(logits_BLV, labels_BL):
  """Cross-entropy averaged over the labelled positions: our sum over masked_weights / their sum (weights 0 or 1)."""
  import torch.nn.functional as F

  return F.cross_entropy(logits_BLV.flatten(0, 1), labels_BL.flatten(), ignore_index=-100)


def check_bert_export(model: Any) -> None:
  """The bert family's exports (convert/bert.py) that transformers computes as we do."""
  if model.share in ("attention", "ffn"):
    raise UserError(f"transformers has no model with model.share={model.share}; choose share=all (ALBERT) or none")
  albert = model.share == "all" or model.embedding_projection
  if albert and model.position_offset:
    raise UserError("transformers' ALBERT counts positions from 0; set --config.model.position_offset=false")
  if not albert and model.inner_group_num != 1:
    raise UserError("model.inner_group_num > 1 exists only in ALBERT; set --config.model.embedding_projection=true")
  if not albert and model.position_offset and model.sentence_head != "none":
    raise UserError("transformers' RoBERTa has no sentence head; set --config.model.sentence_head=none")
  if not albert and model.position_offset and model.hidden_act != "gelu":
    raise UserError("transformers' RoBERTa MLM head always applies gelu; set --config.model.hidden_act=gelu")
  if model.sentence_head == "none" and model.pooler:
    raise UserError("transformers' *ForMaskedLM models have no pooler; set --config.model.pooler=false")


def encoder_model(weights: dict):
  """The export's model; an ALBERT sentence head without dropout, as ours (AlbertSOPHead drops its input)."""
  hf_config = weights["hf_config"]
  if hf_config["model_type"] == "albert":
    hf_config = {**hf_config, "classifier_dropout_prob": 0.0}
  return torch_reference.hf_model(hf_config, weights["state_dict"])


class MaskedLM:
  """BertForPreTraining / BertForMaskedLM, RobertaForMaskedLM, AlbertForPreTraining / AlbertForMaskedLM: the MLM
  loss over the masked positions plus the sentence task's (NSP or SOP: a 2-way classifier on the pooled output)
  mean over the batch."""
  OWN_PARAMS: tuple[str, ...] = ()

  @staticmethod
  def check(config: Any) -> None:
    check_bert_export(config.model)

  def __init__(self, config: Any, weights: dict):
    self.model = encoder_model(weights)
    self.sentence_task = config.objective.sentence_task

  def named_parameters(self) -> list:
    return list(self.model.named_parameters())

  def inputs(self, batch: dict) -> dict:
    import torch

    inputs = long_tensors(batch, ("input_ids", "token_type_ids", "attention_mask"))
    inputs["labels"] = torch.from_numpy(mlm_labels(batch))
    if self.sentence_task != "none":
      inputs["sentence_label"] = torch.from_numpy(np.asarray(batch["sentence_label"], np.int64))
    return inputs

  def encode(self, inputs: dict, attention_mask, token_type_ids):
    return self.model(input_ids=inputs["input_ids"], token_type_ids=token_type_ids, attention_mask=attention_mask)

  def loss(self, inputs: dict):
    import torch.nn.functional as F

    outputs = self.encode(inputs, inputs["attention_mask"], inputs["token_type_ids"])
    loss = mean_nll(outputs.prediction_logits if hasattr(outputs, "prediction_logits") else outputs.logits,
                    inputs["labels"])
    if self.sentence_task != "none":
      sentence_logits = getattr(outputs, "sop_logits", None)
      if sentence_logits is None:
        sentence_logits = outputs.seq_relationship_logits
      loss = loss + F.cross_entropy(sentence_logits, inputs["sentence_label"])
    return loss


def unilm_masks(attention_mask_BL: np.ndarray, token_type_ids_BL: np.ndarray) -> np.ndarray:
  """Boolean [4, B, L, L] (query, key): objectives/unilm.self_attention_masks under each mask type in turn."""
  length = attention_mask_BL.shape[1]
  real_BL = attention_mask_BL > 0
  query_LL, key_LL = np.arange(length)[:, None], np.arange(length)[None, :]
  source_BL = real_BL & (token_type_ids_BL == 0)
  seq2seq_BLL = source_BL[:, None, :] | (~source_BL[:, :, None] & (key_LL <= query_LL))
  rules = [np.ones_like(seq2seq_BLL), seq2seq_BLL, np.broadcast_to(key_LL <= query_LL, seq2seq_BLL.shape),
           np.broadcast_to(key_LL >= query_LL, seq2seq_BLL.shape)]
  return np.stack([real_BL[:, None, :] & (rule_BLL | ~real_BL[:, :, None]) for rule_BLL in rules])


def unilm_segments(attention_mask_BL: np.ndarray, token_type_ids_BL: np.ndarray) -> np.ndarray:
  """[4, B, L]: objectives/unilm.lm_segment_ids under each mask type in turn."""
  table_T2 = np.asarray(UNILM_LM_SEGMENTS)
  return np.where(attention_mask_BL > 0, table_T2[:, np.clip(token_type_ids_BL, 0, 1)], 0)


class UniLM(MaskedLM):
  """BertForPreTraining under UniLM's self-attention masks, given as an additive [B, 1, L, L] float mask. Ours draws
  one mask type per batch inside the step from the step's key; this reference draws one per step from numpy's
  generator (seeded by config.seed) with the same proportions (`mask_types`); each type costs the same work, a
  full [L, L] mask. The masks of all four types are built once per batch before timing; a step picks its type's."""

  def __init__(self, config: Any, weights: dict):
    super().__init__(config, weights)
    self.lm_segments = config.objective.lm_segments  # set: objectives.fill_defaults
    self.rng = np.random.default_rng(config.seed)

  def mask_types(self, batch_size: int) -> np.ndarray:
    """[B] indices into objectives/unilm.MASK_TYPES: one type for the whole batch, drawn as ours draws it."""
    return np.full((batch_size,), self.rng.choice(len(UNILM_PROPORTIONS), p=UNILM_PROPORTIONS), np.int64)

  def inputs(self, batch: dict) -> dict:
    import torch

    inputs = super().inputs(batch)
    masks_TBLL = unilm_masks(batch["attention_mask"], batch["token_type_ids"])
    additive = np.where(masks_TBLL, 0.0, np.finfo(np.float32).min).astype(np.float32)
    inputs["masks"] = torch.from_numpy(additive[:, :, None])  # [T, B, 1, L, L]
    if self.lm_segments:
      segments_TBL = unilm_segments(batch["attention_mask"], batch["token_type_ids"])
    else:
      segments_TBL = np.broadcast_to(batch["token_type_ids"], (len(UNILM_PROPORTIONS), *batch["token_type_ids"].shape))
    inputs["segments"] = torch.from_numpy(np.array(segments_TBL, np.int64))
    return inputs

  def loss(self, inputs: dict):
    import torch
    import torch.nn.functional as F

    rows_B = torch.arange(inputs["input_ids"].shape[0])
    types_B = torch.from_numpy(self.mask_types(len(rows_B)))
    outputs = self.encode(inputs, inputs["masks"][types_B, rows_B], inputs["segments"][types_B, rows_B])
    loss = mean_nll(outputs.prediction_logits, inputs["labels"])
    if self.sentence_task != "none":  # only bidirectional rows train NSP; the denominator stays the batch size
      nll_B = F.cross_entropy(outputs.seq_relationship_logits, inputs["sentence_label"], reduction="none")
      loss = loss + torch.sum(nll_B * (types_B == 0)) / len(rows_B)
    return loss


class SpanBoundaryHead:
  """models/spanbert.SpanBoundaryHead in torch, from our sbo_head parameters (weights["own"])."""

  def __init__(self, own: dict, hidden_act: str, eps: float):
    import torch
    from transformers.activations import ACT2FN

    param = lambda name, transpose=False: torch.nn.Parameter(torch.from_numpy(
        np.array(own[f"sbo_head/{name}"].T if transpose else own[f"sbo_head/{name}"], np.float32)))
    self.parameters = {"position_embeddings": param("position_embeddings/embedding"), "bias": param("bias")}
    for k in (1, 2):
      self.parameters |= {f"dense_{k}.weight": param(f"dense_{k}/kernel", True),
                          f"dense_{k}.bias": param(f"dense_{k}/bias"),
                          f"layer_norm_{k}.weight": param(f"layer_norm_{k}/scale"),
                          f"layer_norm_{k}.bias": param(f"layer_norm_{k}/bias")}
    self.activation, self.eps = ACT2FN[hidden_act], eps

  def __call__(self, x_BLD, left_BP, right_BP, relative_BP, word_embeddings_VD):
    import torch
    import torch.nn.functional as F

    p = self.parameters
    rows_B1 = torch.arange(x_BLD.shape[0])[:, None]
    h_BPX = torch.cat([x_BLD[rows_B1, left_BP], x_BLD[rows_B1, right_BP], p["position_embeddings"][relative_BP]], -1)

    def block(k, h):  # dense to D -> activation -> LayerNorm, on X (k = 1) or D (k = 2) features
      h_BPD = F.linear(h, p[f"dense_{k}.weight"], p[f"dense_{k}.bias"])
      return F.layer_norm(self.activation(h_BPD), h_BPD.shape[-1:], p[f"layer_norm_{k}.weight"],
                          p[f"layer_norm_{k}.bias"], self.eps)

    h_BPD = block(2, block(1, h_BPX))
    return h_BPD @ word_embeddings_VD.T + p["bias"]


class SpanBoundary:
  """BertForMaskedLM (the export: encoder and MLM head) and our span-boundary head on its last hidden states,
  scoring the vocabulary against the same word embeddings: MLM mean + SBO mean over the SBO targets."""
  OWN_PARAMS = ("sbo_head",)

  @staticmethod
  def check(config: Any) -> None:
    check_bert_export(config.model)

  def __init__(self, config: Any, weights: dict):
    self.model = encoder_model(weights)
    self.sbo_head = SpanBoundaryHead(weights["own"], config.model.hidden_act, config.model.layer_norm_eps)

  def named_parameters(self) -> list:
    return list(self.model.named_parameters()) + [(f"sbo_head.{k}", p) for k, p in self.sbo_head.parameters.items()]

  def inputs(self, batch: dict) -> dict:
    import torch

    inputs = long_tensors(batch, ("input_ids", "token_type_ids", "attention_mask", "masked_ids", "sbo_left",
                                  "sbo_right", "sbo_relative"))
    inputs["labels"] = torch.from_numpy(mlm_labels(batch))
    inputs["sbo_weights"] = torch.from_numpy(np.asarray(batch["sbo_weights"], np.float32))
    return inputs

  def loss(self, inputs: dict):
    import torch
    import torch.nn.functional as F

    outputs = self.model(input_ids=inputs["input_ids"], token_type_ids=inputs["token_type_ids"],
                         attention_mask=inputs["attention_mask"], output_hidden_states=True)
    word_embeddings_VD = self.model.get_input_embeddings().weight
    logits_BPV = self.sbo_head(outputs.hidden_states[-1], inputs["sbo_left"], inputs["sbo_right"],
                               inputs["sbo_relative"], word_embeddings_VD)
    nll_BP = F.cross_entropy(logits_BPV.transpose(1, 2), inputs["masked_ids"], reduction="none")
    weights_BP = inputs["sbo_weights"]
    sbo = torch.sum(nll_BP * weights_BP) / torch.clamp(torch.sum(weights_BP), min=1.0)
    return mean_nll(outputs.logits, inputs["labels"]) + sbo


class ReplacedTokenDetection:
  """ElectraForMaskedLM (the generator companion) and ElectraForPreTraining (the discriminator) over one shared
  ElectraEmbeddings, as ours: gen_weight x the generator's MLM mean + disc_weight x the discriminator's binary
  cross-entropy mean over the real tokens, the discriminator reading the original sequence with the generator's
  draws (`sample`: Gumbel-max from its logits / temperature, no gradient) at the masked positions."""
  OWN_PARAMS: tuple[str, ...] = ()

  @staticmethod
  def check(config: Any) -> None:
    if config.model.hidden_act != "gelu":
      raise UserError("transformers' ELECTRA generator head always applies gelu; set --config.model.hidden_act=gelu")

  def __init__(self, config: Any, weights: dict):
    o = config.objective
    self.gen_weight, self.disc_weight, self.temperature = o.gen_weight, o.disc_weight, o.temperature
    self.discriminator = torch_reference.hf_model(weights["hf_config"], weights["state_dict"])
    self.generator = torch_reference.hf_model(*weights["companions"]["generator"])
    self.generator.electra.embeddings = self.discriminator.electra.embeddings
    self.generator.tie_weights()

  def named_parameters(self) -> list:
    named, seen = [], set()
    for tower, model in (("discriminator", self.discriminator), ("generator", self.generator)):
      for name, p in model.named_parameters():
        if id(p) not in seen:
          seen.add(id(p))
          named.append((f"{tower}.{name}", p))
    return named

  def inputs(self, batch: dict) -> dict:
    import torch

    inputs = long_tensors(batch, ("input_ids", "token_type_ids", "attention_mask", "masked_positions"))
    labels = mlm_labels(batch)
    inputs["labels"] = torch.from_numpy(labels)
    inputs["original"] = torch.from_numpy(np.where(labels >= 0, labels, batch["input_ids"]).astype(np.int64))
    rows, slots = np.nonzero(batch["masked_weights"])
    inputs["written"] = (torch.from_numpy(rows), torch.from_numpy(slots))
    return inputs

  def sample(self, logits_BPV):
    """[B, P] ids drawn from softmax(logits / temperature) by the Gumbel-max trick (torch's global generator)."""
    import torch

    uniform_BPV = torch.rand(logits_BPV.shape).clamp_(min=torch.finfo(torch.float32).tiny)
    return torch.argmax(logits_BPV.detach() / self.temperature - torch.log(-torch.log(uniform_BPV)), dim=-1)

  def loss(self, inputs: dict):
    import torch
    import torch.nn.functional as F

    types_BL, mask_BL = inputs["token_type_ids"], inputs["attention_mask"]
    logits_BLV = self.generator(input_ids=inputs["input_ids"], token_type_ids=types_BL, attention_mask=mask_BL).logits
    rows_B1 = torch.arange(logits_BLV.shape[0])[:, None]
    sampled_BP = self.sample(logits_BLV[rows_B1, inputs["masked_positions"]])
    rows, slots = inputs["written"]
    original_BL = inputs["original"]
    fake_BL = original_BL.clone()
    fake_BL[rows, inputs["masked_positions"][rows, slots]] = sampled_BP[rows, slots]
    labels_BL = ((fake_BL != original_BL) & (mask_BL > 0)).float()
    disc_BL = self.discriminator(input_ids=fake_BL, token_type_ids=types_BL, attention_mask=mask_BL).logits
    tokens_BL = mask_BL.float()
    bce_BL = F.binary_cross_entropy_with_logits(disc_BL, labels_BL, reduction="none")
    disc = torch.sum(bce_BL * tokens_BL) / torch.clamp(torch.sum(tokens_BL), min=1.0)
    return self.gen_weight * mean_nll(logits_BLV, inputs["labels"]) + self.disc_weight * disc
