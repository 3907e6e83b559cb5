"""transformers references of the generative objectives for `bert-jax bench --compare-hf` (the protocol:
torch_reference.py): T5's span corruption, XLNet's permutation LM (memory carried from step to step), GPT-2's causal
LM and BART's text infilling, each the export of our parameters in the model its hf_config names, with our loss
computed from its logits. torch and transformers are imported inside functions only, JAX never (this runs in the
PyTorch worker).
"""

from typing import Any

import numpy as np

from bert_jax.bench import torch_reference
from bert_jax.errors import UserError


def _long(x: np.ndarray):
  import torch

  return torch.from_numpy(np.asarray(x, np.int64))


def token_nll(logits_BTV, targets_BT):
  """(cross-entropy, log of the softmax normalizer) per token, [B, T] each, in float32."""
  import torch

  logits_BTV = logits_BTV.float()
  log_z_BT = torch.logsumexp(logits_BTV, -1)
  return log_z_BT - logits_BTV.gather(-1, targets_BT[..., None])[..., 0], log_z_BT


SEQ2SEQ_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")


def encoder_decoder_nll(model: Any, inputs: dict):
  """token_nll of a transformers encoder-decoder's logits, given inputs with SEQ2SEQ_INPUTS and "targets"."""
  return token_nll(model(**{name: inputs[name] for name in SEQ2SEQ_INPUTS}).logits, inputs["targets"])


def weighted_mean(values_BT, weights_BT, count: float):
  """sum(values * weights) / count, where an empty term (count 0) gives 0 as objectives.training_loss."""
  return (values_BT * weights_BT).sum() / (count + (count == 0))


def permutation_mask(perm_rank_BL: np.ndarray, is_target_BL: np.ndarray) -> np.ndarray:
  """objectives.permutation_lm.permutation_mask in numpy (that module imports JAX): [B, L, L] 1.0 where query i
  may not see j."""
  limit_BL = perm_rank_BL + 1 - is_target_BL
  return (perm_rank_BL[:, None, :] >= limit_BL[:, :, None]).astype(np.float32)


class _Reference:
  OWN_PARAMS: tuple[str, ...] = ()
  model: Any  # the transformers model, set by each reference's __init__

  @staticmethod
  def check(config: Any) -> None:
    """transformers models every setting of this family's export."""

  def named_parameters(self) -> list:
    return list(self.model.named_parameters())


class SpanCorruption(_Reference):
  """T5ForConditionalGeneration (v1.0 or v1.1): the targets' mean cross-entropy plus objective.z_loss times the mean
  squared log-normalizer, both over the target tokens (decoder_segment_ids > 0)."""

  def __init__(self, config: Any, weights: dict):
    import torch

    state_dict = dict(weights["state_dict"])
    head = state_dict.pop("lm_head.weight", None)
    self.model = torch_reference.hf_model(weights["hf_config"], state_dict)
    if head is not None and self.model.lm_head.weight is self.model.shared.weight:
      # transformers 5 ties T5's lm_head to the embedding whatever the config; v1.1's head is its own
      self.model.lm_head.weight = torch.nn.Parameter(torch.from_numpy(np.array(head)))
    self.z_loss = float(config.objective.z_loss)  # set: objectives.fill_defaults

  def inputs(self, batch: dict) -> dict:
    import torch

    if (batch["encoder_segment_ids"] > 1).any() or (batch["decoder_segment_ids"] > 1).any():
      raise UserError("transformers' T5 cannot attend within packed examples; compare unpacked rows "
                      "(--config.objective.packing=false)")
    targets_BT = batch["decoder_target_tokens"]
    shifted_BT = np.pad(targets_BT, ((0, 0), (1, 0)))[:, :-1]
    weights_BT = (batch["decoder_segment_ids"] > 0).astype(np.float32)
    return {"input_ids": _long(batch["encoder_input_tokens"]),
            "attention_mask": _long(batch["encoder_segment_ids"] > 0),
            "decoder_input_ids": _long(np.where(batch["decoder_positions"] == 0, 0, shifted_BT)),
            "decoder_attention_mask": _long(weights_BT), "targets": _long(targets_BT),
            "weights": torch.from_numpy(weights_BT), "count": float(weights_BT.sum())}

  def loss(self, inputs: dict):
    nll_BT, log_z_BT = encoder_decoder_nll(self.model, inputs)
    loss = weighted_mean(nll_BT, inputs["weights"], inputs["count"])
    if self.z_loss:
      loss = loss + self.z_loss * weighted_mean(log_z_BT.square(), inputs["weights"], inputs["count"])
    return loss


class PermutationLM(_Reference):
  """XLNetLMHeadModel with our perm_mask, target_mapping and token_type_ids (no attention mask, as ours): the mean
  cross-entropy over the weighted targets. With model.mem_len > 0 the memory is carried as our train state carries
  it: zeros at the start ([mem_len, B, D] per layer, as the original's train_gpu.py), then each step's `mems`
  (reuse_len states, detached by transformers' cache_mem) feed the next. transformers' bi_data reads the first half
  of a batch forwards and the second backwards; ours flags each row (`reversed`), so with objective.bi_data the
  model's relative_positional_encoding is replaced by the same sinusoids with each row's direction."""

  def __init__(self, config: Any, weights: dict):
    self.model = torch_reference.hf_model(weights["hf_config"], weights["state_dict"])
    self.mem_len = config.model.mem_len
    self.mems: list[Any] | None = None
    self.reversed_B: Any = None  # [B] bool: the current batch's reversed rows (a torch tensor, set by loss)
    if config.objective.bi_data:
      self.model.transformer.relative_positional_encoding = self._relative_positional_encoding

  def _relative_positional_encoding(self, qlen: int, klen: int, bsz=None, device=None):
    """transformers' relative_positional_encoding ([klen + qlen, B, D]: distances klen ... 1 - qlen, clamped) with
    the distances of each reversed row negated, as its bi_data does for the second half of a batch."""
    import torch

    transformer = self.model.transformer
    freq_seq = torch.arange(0, transformer.d_model, 2.0, dtype=torch.int64, device=device).float()
    inv_freq = 1 / torch.pow(10000, (freq_seq / transformer.d_model))
    forward_R = torch.arange(klen, -qlen, -1.0, dtype=torch.int64, device=device).float()
    pos_seq_RB = torch.where(self.reversed_B[None, :], -forward_R[:, None], forward_R[:, None])
    if transformer.clamp_len > 0:
      pos_seq_RB = pos_seq_RB.clamp(-transformer.clamp_len, transformer.clamp_len)
    sinusoid_RBD = pos_seq_RB[..., None] * inv_freq
    return torch.cat([torch.sin(sinusoid_RBD), torch.cos(sinusoid_RBD)], dim=-1)

  def inputs(self, batch: dict) -> dict:
    import torch

    B, P = batch["target_positions"].shape
    target_mapping_BPL = np.zeros((B, P, batch["input_ids"].shape[1]), np.float32)
    target_mapping_BPL[np.arange(B)[:, None], np.arange(P)[None], batch["target_positions"]] = 1.0
    return {"input_ids": _long(batch["input_ids"]), "token_type_ids": _long(batch["token_type_ids"]),
            "perm_mask": torch.from_numpy(permutation_mask(batch["perm_rank"], batch["is_target"])),
            "target_mapping": torch.from_numpy(target_mapping_BPL), "targets": _long(batch["target_ids"]),
            "weights": torch.from_numpy(np.asarray(batch["target_weights"], np.float32)),
            "count": float(np.sum(batch["target_weights"])),
            "reversed": torch.from_numpy(np.asarray(batch["reversed"]) > 0)}

  def loss(self, inputs: dict):
    import torch

    self.reversed_B = inputs["reversed"]
    if self.mem_len and self.mems is None:
      shape = (self.mem_len, inputs["input_ids"].shape[0], self.model.transformer.d_model)
      self.mems = [torch.zeros(shape) for _ in self.model.transformer.layer]
    out = self.model(input_ids=inputs["input_ids"], token_type_ids=inputs["token_type_ids"],
                     perm_mask=inputs["perm_mask"], target_mapping=inputs["target_mapping"], mems=self.mems,
                     use_mems=bool(self.mem_len))
    if self.mem_len:
      self.mems = list(out.mems)
    nll_BP, _ = token_nll(out.logits, inputs["targets"])
    return weighted_mean(nll_BP, inputs["weights"], inputs["count"])


class CausalLM(_Reference):
  """GPT2LMHeadModel on input_ids (the window's first seq_len tokens): the mean cross-entropy of every position's
  next token (target_ids, the window's last seq_len)."""

  def __init__(self, config: Any, weights: dict):
    self.model = torch_reference.hf_model(weights["hf_config"], weights["state_dict"])

  def inputs(self, batch: dict) -> dict:
    return {"input_ids": _long(batch["input_ids"]), "targets": _long(batch["target_ids"])}

  def loss(self, inputs: dict):
    nll_BL, _ = token_nll(self.model(input_ids=inputs["input_ids"]).logits, inputs["targets"])
    return nll_BL.mean()


class TextInfilling(_Reference):
  """BartForConditionalGeneration on our source and shifted target: the mean cross-entropy over the target tokens
  (decoder_attention_mask)."""

  @staticmethod
  def check(config: Any) -> None:
    if config.model.layer_norm_eps != 1e-5:
      raise UserError(f"transformers' BART has LayerNorm eps 1e-5, this model {config.model.layer_norm_eps}; set "
                      "--config.model.layer_norm_eps=1e-5")

  def __init__(self, config: Any, weights: dict):
    self.model = torch_reference.hf_model(weights["hf_config"], weights["state_dict"])

  def inputs(self, batch: dict) -> dict:
    import torch

    weights_BT = np.asarray(batch["decoder_attention_mask"], np.float32)
    return {**{name: _long(batch[name]) for name in SEQ2SEQ_INPUTS}, "targets": _long(batch["labels"]),
            "weights": torch.from_numpy(weights_BT), "count": float(weights_BT.sum())}

  def loss(self, inputs: dict):
    nll_BT, _ = encoder_decoder_nll(self.model, inputs)
    return weighted_mean(nll_BT, inputs["weights"], inputs["count"])
