"""XLNet's memory carried between batches, as the original pretrains: the stream layout of the batches, training
two consecutive segments against XLNetLMHeadModel with `mems` passed by hand, and an exact resume."""

import jax
import numpy as np
from objective_helpers import EOD, FakeTokenizer, stream_documents
import pytest
import torch
import transformers

from bert_jax import config as config_lib, convert
from bert_jax.errors import UserError
from bert_jax.objectives import get_objective
from bert_jax.objectives.permutation_lm import permutation_mask
from bert_jax.train import loop
from bert_jax.train.trainer import Trainer

R, L, K, ROWS = 32, 64, 4, 6  # xlnet_tiny's reuse_len and seq_len; stream steps; rows of a batch


def stream_batches(bi_data: bool, batches: int):
  config = config_lib.load_config("xlnet_tiny", [f"objective.bi_data={bi_data}", "model.mem_len=48"])
  docs, documents = stream_documents()
  dataset = get_objective(config).stream_batches(documents, FakeTokenizer(), 7, True, ROWS, K)
  return np.concatenate([np.append(d, EOD) for d in docs]), list(dataset.take(batches).as_numpy_iterator())


@pytest.mark.parametrize("bi_data", [False, True])
def test_rows_continue_one_stretch_of_text_as_the_original_batches_do(bi_data):
  """The original (zihangdai/xlnet data_utils.create_tfrecords) gives row r at step t the reuse part
  row_stream[t * reuse_len:(t + 1) * reuse_len]; with bi_data the backward rows read the same stream reversed."""
  stream, batches = stream_batches(bi_data, 2 * K)
  stretch_len = (K - 1) * R + L - 3
  stretches_per_group = ROWS // 2 if bi_data else ROWS
  for step, batch in enumerate(batches):
    group, t = divmod(step, K)
    assert batch["input_ids"].shape == (ROWS, L)
    for row in range(ROWS):
      stretch = group * stretches_per_group + (row // 2 if bi_data else row)
      text = stream[stretch * stretch_len:(stretch + 1) * stretch_len]
      backward = bi_data and row % 2 == 1
      text = text[::-1] if backward else text
      np.testing.assert_array_equal(batch["input_ids"][row, :R], text[t * R:(t + 1) * R],
                                    err_msg=f"step {step} row {row}")
      assert batch["reversed"][row] == backward
      # A starts where the next step's reuse part starts
      assert batch["input_ids"][row, R] == text[(t + 1) * R]


def test_memory_needs_a_reuse_part_and_even_rows_with_bi_data():
  with pytest.raises(UserError, match="needs model.reuse_len > 0"):
    get_objective(config_lib.load_config("xlnet_tiny", ["model.mem_len=48", "model.reuse_len=0"]))
  config = config_lib.load_config("xlnet_tiny", ["model.mem_len=48", "objective.bi_data=True"])
  with pytest.raises(UserError, match="rows of each process must be even, got 5"):
    get_objective(config).stream_batches(stream_documents()[1], FakeTokenizer(), 0, True, 5, 2)


MEMORY_CONFIG = ["data.source=synthetic", "model.vocab_size=100", "model.hidden_size=32", "model.num_heads=4",
                 "model.intermediate_size=64", "model.num_layers=2", "model.dropout=0.0", "model.initializer_range=0.5",
                 "data.seq_len=16",
                 "model.reuse_len=8", "model.mem_len=12", "objective.perm_size=8", "objective.num_predict=4",
                 "objective.bi_data=False", "train.batch_size=4", "optimizer.learning_rate=0.01",
                 "optimizer.warmup_steps=1", "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"]


def hf_loss(model_config, params, batch, mems):
  """XLNetLMHeadModel's loss over the batch's targets, and its new mems, with `mems` given by hand."""
  hf_config, state_dict = convert.to_hf(model_config, params)
  model = transformers.XLNetLMHeadModel(transformers.XLNetConfig(**hf_config)).eval()
  missing, unexpected = model.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in state_dict.items()},
                                              strict=False)
  assert missing == ["lm_loss.weight"] and not unexpected  # the decoder is tied to the word embeddings
  b, p = batch["target_positions"].shape
  mapping = np.zeros((b, p, batch["input_ids"].shape[1]), np.float32)
  mapping[np.arange(b)[:, None], np.arange(p)[None], batch["target_positions"]] = 1.0
  perm_mask = np.asarray(permutation_mask(batch["perm_rank"], batch["is_target"]), np.float32)
  with torch.no_grad():
    out = model(input_ids=torch.tensor(batch["input_ids"], dtype=torch.long),
                token_type_ids=torch.tensor(batch["token_type_ids"], dtype=torch.long),
                perm_mask=torch.tensor(perm_mask), target_mapping=torch.tensor(mapping), mems=mems, use_mems=True)
  targets = torch.tensor(batch["target_ids"], dtype=torch.long).reshape(-1)
  nll = torch.nn.functional.cross_entropy(out.logits.reshape(b * p, -1), targets, reduction="none").numpy()
  weights = batch["target_weights"].reshape(-1)
  return float((nll * weights).sum() / weights.sum()), out.mems


def test_two_consecutive_segments_train_with_the_losses_xlnet_gives_with_mems_passed_by_hand(tmp_path):
  config = config_lib.load_config("xlnet_tiny", MEMORY_CONFIG)
  trainer = Trainer(config)  # 8 devices: the memory is sharded with the batch's rows
  batches = trainer.batches(str(tmp_path))
  first, second = jax.device_get(next(batches)), jax.device_get(next(batches))
  state = trainer.init_state()
  assert state.memory.shape == (4, 2, 12, 32) and not np.asarray(state.memory).any()  # zeros, as the original
  assert state.memory.sharding.spec[0] == ("dcn", "data", "fsdp")
  params_0 = jax.device_get(state.params)
  state, out_1 = trainer.train_step(state, jax.device_put(first, trainer.batch_shardings))
  params_1, memory_1 = jax.device_get(state.params), jax.device_get(state.memory)
  state, out_2 = trainer.train_step(state, jax.device_put(second, trainer.batch_shardings))

  zeros = [torch.zeros(12, 4, 32)] * 2
  expected_1, hf_mems = hf_loss(config.model, params_0, first, zeros)
  np.testing.assert_allclose(float(out_1["loss"]), expected_1, rtol=1e-5)
  np.testing.assert_allclose(memory_1, np.stack([m.numpy() for m in hf_mems]).transpose(2, 0, 1, 3), atol=1e-5)
  expected_2, _ = hf_loss(config.model, params_1, second, hf_mems)
  np.testing.assert_allclose(float(out_2["loss"]), expected_2, rtol=1e-5)
  without_memory, _ = hf_loss(config.model, params_1, second, zeros)
  assert abs(without_memory - expected_2) > 0.05  # the memory matters


def test_resume_restores_the_memory_exactly(tmp_path):
  overrides = MEMORY_CONFIG + ["train.log_every=1", "checkpoint.every=2"]
  straight, _ = loop.train(config_lib.load_config("xlnet_tiny", overrides + ["train.steps=4"]), str(tmp_path / "a"))
  loop.train(config_lib.load_config("xlnet_tiny", overrides + ["train.steps=2"]), str(tmp_path / "b"))
  resumed, _ = loop.train(config_lib.load_config("xlnet_tiny", overrides + ["train.steps=4"]), str(tmp_path / "b"))
  assert int(resumed.step) == 4 and np.asarray(resumed.memory).any()
  leaves = [jax.tree_util.tree_leaves(jax.device_get(state)) for state in (straight, resumed)]
  for a, b in zip(*leaves):
    np.testing.assert_array_equal(a, b)
