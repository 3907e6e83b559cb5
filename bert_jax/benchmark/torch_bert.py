"""The reference `bert-jax bench --compare-hf` times: transformers' PyTorch BertForPreTraining on our batches.
Imported by the PyTorch worker only (and by `bench` to check a config before any worker starts); never JAX."""

import os
import time
from typing import Any, Callable

import numpy as np

from bert_jax.errors import UserError


def check_hf_comparable(config: Any) -> None:
  """transformers' BERT models the config exactly: plain BERT, masked LM with NSP or no sentence task, float32."""
  model = config.model
  if (model.family != "bert" or model.embedding_projection or model.share != "none" or model.position_offset
      or model.embedding_size not in (0, model.hidden_size) or model.num_hidden_groups != 1
      or model.inner_group_num != 1):
    raise UserError("--compare-hf compares plain BERT configs (no ALBERT factorization or sharing, no RoBERTa "
                    "positions); choose a bert_* config")
  if config.objective.name != "masked_lm" or config.objective.sentence_task not in ("nsp", "none"):
    raise UserError("--compare-hf needs the masked_lm objective with objective.sentence_task=nsp or none")
  if model.dtype != "float32":
    raise UserError("--compare-hf compares float32 training; set --config.model.dtype=float32")


def hf_bert_config(model: Any):
  """transformers.BertConfig of the same size as a plain BERT model config."""
  import transformers

  return transformers.BertConfig(
      vocab_size=model.vocab_size, hidden_size=model.hidden_size, num_hidden_layers=model.num_layers,
      num_attention_heads=model.num_heads, intermediate_size=model.intermediate_size, hidden_act=model.hidden_act,
      hidden_dropout_prob=model.dropout, attention_probs_dropout_prob=model.attention_dropout,
      max_position_embeddings=model.max_position, type_vocab_size=model.type_vocab_size,
      layer_norm_eps=model.layer_norm_eps, initializer_range=model.initializer_range, pad_token_id=model.pad_token_id)


def hf_batch(batch: dict) -> dict:
  """Our masked-LM features as BertForPreTraining's inputs: labels at the masked positions, -100 elsewhere."""
  import torch

  labels = np.full(batch["input_ids"].shape, -100, np.int64)
  rows, slots = np.nonzero(batch["masked_weights"])
  labels[rows, batch["masked_positions"][rows, slots]] = batch["masked_ids"][rows, slots]
  inputs = {"input_ids": batch["input_ids"], "token_type_ids": batch["token_type_ids"],
            "attention_mask": batch["attention_mask"], "labels": labels}
  if "sentence_label" in batch:
    inputs["next_sentence_label"] = batch["sentence_label"]
  return {name: torch.from_numpy(np.asarray(x, np.int64)) for name, x in inputs.items()}


class TorchStep:
  """transformers' BertForPreTraining (random weights from a config) with torch AdamW, all CPU threads;
  weight decay off biases and LayerNorm weights, as in our optimizer."""

  def __init__(self, config: Any, batches: list[dict]):
    import torch
    import transformers

    check_hf_comparable(config)
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(config.seed)
    hf_config = hf_bert_config(config.model)
    if config.objective.sentence_task == "nsp":
      self.model = transformers.BertForPreTraining(hf_config)
    else:
      self.model = transformers.BertForMaskedLM(hf_config)
    self.model.train()
    no_decay = lambda name: name.endswith(".bias") or "LayerNorm" in name
    named = list(self.model.named_parameters())
    o = config.optimizer
    groups = [{"params": [p for n, p in named if not no_decay(n)], "weight_decay": o.weight_decay},
              {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0}]
    self.optimizer = torch.optim.AdamW(groups, lr=o.learning_rate, betas=(o.b1, o.b2), eps=o.eps)
    self.clip_norm = config.train.clip_norm
    self.batches = [hf_batch(b) for b in batches]
    self.steps = 0
    self.compile_seconds = None
    self.description = {"torch_threads": torch.get_num_threads()}
    self.first_step_seconds = self.run(1)[0]

  def run(self, steps: int) -> list[float]:
    import torch

    times = []
    for _ in range(steps):
      start = time.perf_counter()
      loss = self.model(**self.batches[self.steps % len(self.batches)]).loss
      loss.backward()
      if self.clip_norm:
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
      self.optimizer.step()
      self.optimizer.zero_grad(set_to_none=True)
      times.append(time.perf_counter() - start)
      self.steps += 1
    return times

  def peak_matmul(self, size: int) -> Callable[[], Any]:
    """A float32 [size, size] x [size, size] product in PyTorch (its BLAS, all threads)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    return lambda: torch.mm(a, b)
