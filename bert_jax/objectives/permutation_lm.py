"""XLNet's permutation language model with partial prediction (the tf.data side: objectives/permutation.py).

Features of one example (L = data.seq_len, P = objective.num_predict):
  input_ids [L] int32, token_type_ids [L] int32 (0: A, 1: B, 2: [CLS]),
  perm_rank [L] int32 and is_target [L] int32 (the factorization order, see permutation_mask),
  target_positions [P] int32, target_ids [P] int32, target_weights [P] float32 (0 = padding),
  reversed [] int32 (1 = the example reads backwards; only with objective.bi_data).

Training runs every batch on its own: the model's memory (model.mem_len) is not carried from one batch to
the next. model.reuse_len shapes the examples (a leading part with its own targets and order).
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bert_jax.errors import UserError
from bert_jax.objectives import summarize_tokens

SPECIAL_TOKENS = 3  # [SEP] after A, [SEP] after B, [CLS]


def permutation_mask(perm_rank_BL: jax.Array, is_target_BL: jax.Array) -> jax.Array:
  """[B, L, L] bool, True where query i may not see j (Hugging Face's perm_mask): j is visible iff
  perm_rank[j] < perm_rank[i], or j and i are both non-targets of ranks perm_rank[j] <= perm_rank[i]."""
  limit_BL = perm_rank_BL + 1 - is_target_BL
  return perm_rank_BL[:, None, :] >= limit_BL[:, :, None]


class PermutationLM:

  def __init__(self, config: Any):
    self.config = config
    self.seq_len = config.data.seq_len
    self.num_predict = config.objective.num_predict
    self.reuse_len = config.model.get("reuse_len", 0)
    self.validate()

  def validate(self) -> None:
    o, L, R, P = self.config.objective, self.seq_len, self.reuse_len, self.num_predict
    family = self.config.model.get("family")
    if family != "xlnet":
      raise UserError(f"objective permutation_lm needs model.family=xlnet, got {family!r}")
    if not 0 <= R <= L - SPECIAL_TOKENS - 2:
      raise UserError(f"model.reuse_len={R} leaves no room for two segments in data.seq_len={L}; "
                      f"use at most {L - SPECIAL_TOKENS - 2}")
    if o.perm_size <= 0 or L % o.perm_size or R % o.perm_size:
      raise UserError(f"objective.perm_size={o.perm_size} must divide data.seq_len={L}"
                      + (f" and model.reuse_len={R}" if R else ""))
    if not self._fits(P):
      limit = max(p for p in range(1, L) if self._fits(p))
      reuse = f" (with model.reuse_len={R}, num_predict // 2 targets fall in the reuse part)" if R else ""
      raise UserError(f"objective.num_predict={P} is more than data.seq_len={L} allows; use 1 to {limit}{reuse}")
    if o.mask_beta <= 0 or o.mask_alpha // o.mask_beta < 2 or o.max_ngram <= 0:
      raise UserError("objective.mask_alpha // objective.mask_beta must be >= 2 and objective.max_ngram >= 1, "
                      f"got {o.mask_alpha}, {o.mask_beta}, {o.max_ngram}")
    if not 0.0 <= o.random_b_prob <= 1.0:
      raise UserError(f"objective.random_b_prob must be in [0, 1], got {o.random_b_prob}")

  def _fits(self, num_predict: int) -> bool:
    """Whether num_predict targets fit among the ordinary tokens of each part of an example."""
    L, R = self.seq_len, self.reuse_len
    if not R:
      return 0 < num_predict <= L - SPECIAL_TOKENS
    return 0 < num_predict and num_predict // 2 <= R and num_predict - num_predict // 2 <= L - R - SPECIAL_TOKENS

  def feature_spec(self, batch_size: int) -> dict:
    L, P = self.seq_len, self.num_predict
    names = ("input_ids", "token_type_ids", "perm_rank", "is_target")
    spec = {name: ((batch_size, L), np.int32) for name in names}
    spec.update({"target_positions": ((batch_size, P), np.int32), "target_ids": ((batch_size, P), np.int32),
                 "target_weights": ((batch_size, P), np.float32), "reversed": ((batch_size,), np.int32)})
    return spec

  def synthetic_batch(self, batch_size: int, rng: np.random.Generator) -> dict:
    """Random tokens laid out as A [SEP] B [SEP] [CLS], num_predict random targets in a random order."""
    L, P, V = self.seq_len, self.num_predict, self.config.model.vocab_size
    a_end = L // 2
    token_type_ids = np.concatenate([np.zeros(a_end + 1), np.ones(L - a_end - 2), [2]]).astype(np.int32)
    positions = np.sort(np.stack([rng.choice(L - 1, P, replace=False) for _ in range(batch_size)]), 1)
    is_target = np.zeros((batch_size, L), np.int32)
    np.put_along_axis(is_target, positions, 1, axis=1)
    order = np.stack([rng.permutation(L) for _ in range(batch_size)]).astype(np.int32)
    return {"input_ids": rng.integers(10, V, (batch_size, L), dtype=np.int32),
            "token_type_ids": np.tile(token_type_ids, (batch_size, 1)),
            "perm_rank": np.where(is_target == 1, 1 + order, 0).astype(np.int32), "is_target": is_target,
            "target_positions": positions.astype(np.int32),
            "target_ids": rng.integers(10, V, (batch_size, P), dtype=np.int32),
            "target_weights": np.ones((batch_size, P), np.float32),
            "reversed": (rng.random(batch_size) < 0.5).astype(np.int32) if self.config.objective.bi_data
            else np.zeros(batch_size, np.int32)}

  def dataset(self, documents, tokenizer, seed: int, train: bool):
    """Unbatched features from a stream of tokenized documents (see objectives/permutation.py)."""
    from bert_jax.objectives import permutation

    o = self.config.objective
    settings = permutation.Settings(
        seq_len=self.seq_len, reuse_len=self.reuse_len, num_predict=self.num_predict, perm_size=o.perm_size,
        max_ngram=o.max_ngram, mask_alpha=o.mask_alpha, mask_beta=o.mask_beta, random_b_prob=o.random_b_prob,
        bi_data=o.bi_data, sep_id=tokenizer.sep_id, cls_id=tokenizer.cls_id, eod_id=tokenizer.eos_id)
    return permutation.examples(documents, tokenizer.special_mask(), settings, seed, train)

  def forward(self, model, params, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]:
    perm_mask_BLL = permutation_mask(batch["perm_rank"], batch["is_target"])
    outputs = model.apply({"params": params}, batch["input_ids"], batch["token_type_ids"], None, perm_mask_BLL,
                          batch["target_positions"], None, batch["reversed"], rngs=rngs)
    logits_BPV = outputs["logits"].astype(jnp.float32)
    weights_BP = batch["target_weights"]
    nll_BP = optax.softmax_cross_entropy_with_integer_labels(logits_BPV, batch["target_ids"])
    correct_BP = (jnp.argmax(logits_BPV, -1) == batch["target_ids"]) * weights_BP
    return {"plm": jnp.sum(nll_BP * weights_BP)}, {"plm_correct": jnp.sum(correct_BP)}

  def counts(self, batch: dict) -> dict:
    return {"plm": jnp.sum(batch["target_weights"])}

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    return summarize_tokens("plm", sums, metrics, counts)
