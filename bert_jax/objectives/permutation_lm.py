"""XLNet's permutation language model with partial prediction (the tf.data side: objectives/permutation_lm_data.py).

Features of one example (L = data.seq_len, P = objective.num_predict):
  input_ids [L] int32, token_type_ids [L] int32 (0: A, 1: B, 2: [CLS]),
  perm_rank [L] int32 and is_target [L] int32 (the factorization order, see permutation_mask),
  target_positions [P] int32, target_ids [P] int32, target_weights [P] float32 (0 = padding),
  reversed [] int32 (1 = the example reads backwards; only with objective.bi_data).

model.reuse_len shapes the examples (a leading part with its own targets and order). With model.mem_len > 0
the memory is carried from batch to batch as XLNet's pretraining does: the batches come in the original's
stream layout (row r of a batch continues row r of the batch before, for objective.stream_steps batches; see
permutation_lm_data.stream_batches), the train state holds each row's memory (stop-gradient, [B, layers, mem_len, D],
zeros at the start as in the original), and evaluation carries it across its batches from zeros.
"""

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from bert_jax.errors import UserError
from bert_jax.objectives import settings as settings_lib, summarize_tokens, token_scores
from bert_jax.objectives.protocol import FeatureSpec

SPECIAL_TOKENS = 3  # [SEP] after A, [SEP] after B, [CLS]


def permutation_mask(perm_rank_BL: jax.Array, is_target_BL: jax.Array) -> jax.Array:
  """[B, L, L] bool, True where query i may not see j (Hugging Face's and the release's perm_mask): j is visible
  iff perm_rank[j] < perm_rank[i], or i is no target and perm_rank[j] == perm_rank[i] (context sees context; a
  [SEP]/[CLS], in the order with a rank of its own, sees itself). The content stream also lets a target see itself."""
  limit_BL = perm_rank_BL + 1 - is_target_BL
  return perm_rank_BL[:, None, :] >= limit_BL[:, :, None]


@dataclasses.dataclass(frozen=True)
class PermutationLMSettings(settings_lib.Settings):
  """config.objective of permutation_lm; the defaults are XLNet's recipe (bert_jax.recipes.xlnet_config)."""
  num_predict: int = 85  # P: predicted tokens per example, about data.seq_len / K with K = 6
  perm_size: int = 256  # the factorization order is sampled within blocks of this many tokens
  max_ngram: int = 5  # target spans of n <= max_ngram tokens, p(n) proportional to 1/n
  mask_alpha: int = 6  # one span of n tokens in a context of n * mask_alpha / mask_beta tokens
  mask_beta: int = 1
  bi_data: bool = True  # also emit every example read backwards (relative distances negated), as XLNet did
  random_b_prob: float = 0.5  # segment B comes from elsewhere in the corpus instead of following A
  stream_steps: int = 64  # with model.mem_len: batches for which each row continues one stretch of text

  def check(self) -> None:
    if self.mask_beta <= 0 or self.mask_alpha // self.mask_beta < 2 or self.max_ngram <= 0:
      raise UserError("objective.mask_alpha // objective.mask_beta must be >= 2 and objective.max_ngram >= 1, "
                      f"got {self.mask_alpha}, {self.mask_beta}, {self.max_ngram}")
    settings_lib.check_interval(self, "random_b_prob", "[0, 1]")


class PermutationLM:
  FAMILIES: ClassVar[tuple[str, ...] | None] = ("xlnet",)
  SETTINGS: ClassVar[type[PermutationLMSettings]] = PermutationLMSettings
  settings: PermutationLMSettings  # config.objective, read in __init__
  carries_memory: bool  # model.mem_len > 0

  def __init__(self, config: Any):
    self.config = config
    self.settings = settings_lib.from_config(self.SETTINGS, config.objective)
    self.seq_len = config.data.seq_len
    self.num_predict = self.settings.num_predict
    self.reuse_len = config.model.get("reuse_len", 0)
    self.mem_len = config.model.get("mem_len", 0)
    self.carries_memory = self.mem_len > 0
    self.validate()

  def validate(self) -> None:
    o, L, R, P = self.settings, self.seq_len, self.reuse_len, self.num_predict
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
    if self.carries_memory and (R == 0 or o.stream_steps < 1):
      raise UserError(f"model.mem_len={self.mem_len} carries memory between batches, which needs model.reuse_len > 0 "
                      f"(got {R}) and objective.stream_steps >= 1 (got {o.stream_steps}); or set model.mem_len=0")

  def _fits(self, num_predict: int) -> bool:
    """Whether num_predict targets fit among the ordinary tokens of each part of an example."""
    L, R = self.seq_len, self.reuse_len
    if not R:
      return 0 < num_predict <= L - SPECIAL_TOKENS
    return 0 < num_predict and num_predict // 2 <= R and num_predict - num_predict // 2 <= L - R - SPECIAL_TOKENS

  def feature_spec(self, batch_size: int) -> FeatureSpec:
    L, P = self.seq_len, self.num_predict
    names = ("input_ids", "token_type_ids", "perm_rank", "is_target")
    spec: FeatureSpec = {name: ((batch_size, L), np.int32) for name in names}
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
            "reversed": (rng.random(batch_size) < 0.5).astype(np.int32) if self.settings.bi_data
            else np.zeros(batch_size, np.int32)}

  def _data_settings(self, tokenizer):
    from bert_jax.objectives import permutation_lm_data

    o = self.settings
    return permutation_lm_data, permutation_lm_data.Settings(
        seq_len=self.seq_len, reuse_len=self.reuse_len, num_predict=self.num_predict, perm_size=o.perm_size,
        max_ngram=o.max_ngram, mask_alpha=o.mask_alpha, mask_beta=o.mask_beta, random_b_prob=o.random_b_prob,
        bi_data=o.bi_data, sep_id=tokenizer.sep_id, cls_id=tokenizer.cls_id, eod_id=tokenizer.eod_id)

  def dataset(self, documents, tokenizer, seed: int, train: bool):
    """Unbatched features from a stream of tokenized documents (see objectives/permutation_lm_data.py)."""
    permutation_lm_data, settings = self._data_settings(tokenizer)
    return permutation_lm_data.examples(documents, tokenizer.special_mask(), settings, seed, train)

  def stream_batches(self, documents, tokenizer, seed: int, train: bool, rows: int, steps: int):
    """Batches of `rows` in the stream layout that carrying memory needs (see permutation_lm_data.stream_batches)."""
    if self.settings.bi_data and rows % 2:
      raise UserError(f"objective.bi_data pairs each row with its reversed copy, so the batch rows of each process "
                      f"must be even, got {rows}; change the batch size or set objective.bi_data=False")
    permutation_lm_data, settings = self._data_settings(tokenizer)
    return permutation_lm_data.stream_batches(documents, tokenizer.special_mask(), settings, seed, train, rows, steps)

  def stream_tokens(self, rows: int, steps: int) -> int:
    """Tokens of text one group of `steps` stream batches of `rows` reads."""
    rows //= 2 if self.settings.bi_data else 1
    return rows * ((steps - 1) * self.reuse_len + self.seq_len - SPECIAL_TOKENS)

  def memory_spec(self, batch_size: int) -> tuple[tuple[int, ...], Any]:
    """(shape, dtype) of the memory carried between batches: [B, layers, mem_len, hidden]."""
    m = self.config.model
    return (batch_size, m.num_layers, self.mem_len, m.hidden_size), jnp.dtype(m.dtype)

  def forward(self, model, params, batch: dict, rngs: dict | None = None) -> tuple[dict, dict]:
    sums, metrics, _ = self.forward_carrying(model, params, batch, None, rngs)
    return sums, metrics

  def forward_carrying(self, model, params, batch: dict, memory_BYMD, rngs: dict | None = None):
    """(sums, metrics, the memory for the next batch, [B, layers, mem_len, hidden], or None without memory)."""
    perm_mask_BLL = permutation_mask(batch["perm_rank"], batch["is_target"])
    mems_YBMD = None if memory_BYMD is None else jnp.swapaxes(memory_BYMD, 0, 1)
    outputs = model.apply({"params": params}, batch["input_ids"], batch["token_type_ids"], None, perm_mask_BLL,
                          batch["target_positions"], mems_YBMD, batch["reversed"], rngs=rngs)
    logits_BPV = outputs["logits"].astype(jnp.float32)
    weights_BP = batch["target_weights"]
    nll_BP, correct_BP = token_scores.nll_and_correct(logits_BPV, batch["target_ids"])
    correct_BP = correct_BP * weights_BP
    memory = None if outputs["mems"] is None else jnp.swapaxes(outputs["mems"], 0, 1)
    return {"plm": jnp.sum(nll_BP * weights_BP)}, {"plm_correct": jnp.sum(correct_BP)}, memory

  def predict(self, model, params, tokenizer, texts: list[str], top_k: int) -> list[dict]:
    """The top_k pieces at each [MASK] of each text (`bert-jax predict`), laid out as text [SEP] [CLS] the way XLNet
    lays out segment A: the masked positions are the targets, and every position sees every non-target and no
    target (a factorization order with the text first), so each guess is conditioned on all of the text."""
    from bert_jax.objectives import blanks

    def frame(ids):
      return [*ids, tokenizer.sep_id, tokenizer.cls_id], [0] * (len(ids) + 1) + [2], 0

    def apply(params, ids_BL, types_BL, mask_BL, positions_BP):
      is_target_BL = jnp.zeros_like(ids_BL).at[jnp.arange(ids_BL.shape[0])[:, None], positions_BP].set(1)
      perm_mask_BLL = permutation_mask(is_target_BL, is_target_BL)  # ranks: 0 for the text, 1 for the targets
      return model.apply({"params": params}, ids_BL, types_BL, mask_BL, perm_mask_BLL,
                         positions_BP)["logits"].astype(jnp.float32)

    logits = jax.jit(apply)
    return blanks.fill_masks(texts, tokenizer, top_k, None, frame, lambda *batch: logits(params, *batch))

  def counts(self, batch: dict) -> dict:
    return {"plm": jnp.sum(batch["target_weights"])}

  def summarize(self, sums: dict, metrics: dict, counts: dict) -> dict:
    return summarize_tokens("plm", sums, metrics, counts)
