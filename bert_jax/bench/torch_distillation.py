"""The transformers reference of distillation for `bert-jax bench --compare-hf` (the protocol: torch_reference.py):
the student's export, DistilBertForMaskedLM, trained on alpha_mlm x its MLM loss. The teacher's weights do not reach
the PyTorch worker (it reads only the trained model's export), so a run with objective.teacher has no reference;
`bench` without --compare-hf times ours with the teacher in the step. torch and transformers are imported inside
methods only, JAX never.
"""

from typing import Any

from bert_jax.bench import torch_encoders, torch_reference
from bert_jax.errors import UserError


class StudentAlone:
  OWN_PARAMS: tuple[str, ...] = ()

  @staticmethod
  def check(config: Any) -> None:
    if config.objective.teacher:
      raise UserError("--compare-hf compares the student without its teacher (PyTorch gets the student's weights "
                      "only); set --config.objective.teacher= or leave out --compare-hf")

  def __init__(self, config: Any, weights: dict):
    self.model = torch_reference.hf_model(weights["hf_config"], weights["state_dict"])
    self.alpha_mlm = config.objective.alpha_mlm

  def named_parameters(self) -> list:
    return list(self.model.named_parameters())

  def inputs(self, batch: dict) -> dict:
    import torch

    inputs = torch_encoders.long_tensors(batch, ("input_ids", "attention_mask"))
    inputs["labels"] = torch.from_numpy(torch_encoders.mlm_labels(batch))
    return inputs

  def loss(self, inputs: dict):
    logits = self.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    return self.alpha_mlm * torch_encoders.mean_nll(logits, inputs["labels"])
