"""UniLM (objectives/unilm.py): BERT under a full self-attention mask matches transformers; the four masks position
by position; the mask types' proportions over many steps; what each mask hides from the model; the tiny UniLM
learns through the CLI and exports as a BERT that transformers loads."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
import torch
import transformers

from bert_jax import cli, config as config_lib, convert, models
from bert_jax.convert import weights
from bert_jax.objectives import get_objective, unilm

# Tiny graphs: XLA's expensive CPU passes would cost more than running them.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
SMALL = ["model.vocab_size=97", "model.hidden_size=32", "model.num_heads=4", "model.intermediate_size=37",
         "model.max_position=24"]

# [CLS] a a [SEP] b b [SEP] pad: segment A is positions 0-3, B 4-6, position 7 padding.
TYPES = [0, 0, 0, 0, 1, 1, 1, 0]
REAL = [1, 1, 1, 1, 1, 1, 1, 0]
EXPECTED = {  # row: a query; column: a key it may see
    "bidirectional": ["11111110"] * 8,
    "seq2seq": ["11110000"] * 4 + ["11111000", "11111100", "11111110", "11111110"],
    "left_to_right": ["10000000", "11000000", "11100000", "11110000", "11111000", "11111100", "11111110",
                      "11111110"],
    "right_to_left": ["11111110", "01111110", "00111110", "00011110", "00001110", "00000110", "00000010",
                      "11111110"],
}


def _run(fn, *args):
  return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)(*args)


def test_masks_position_by_position_with_padding():
  types = jnp.arange(len(unilm.MASK_TYPES), dtype=jnp.int32)
  n = len(types)
  masks = np.asarray(unilm.self_attention_masks(jnp.asarray([REAL] * n), jnp.asarray([TYPES] * n), types))
  for t, name in enumerate(unilm.MASK_TYPES):
    expected = np.array([[int(c) for c in row] for row in EXPECTED[name]], bool)
    np.testing.assert_array_equal(masks[t], expected, err_msg=name)
  segments = np.asarray(unilm.lm_segment_ids(jnp.asarray([REAL] * n), jnp.asarray([TYPES] * n), types))
  np.testing.assert_array_equal(segments, [[0, 0, 0, 0, 1, 1, 1, 0], [4, 4, 4, 4, 5, 5, 5, 0],
                                           [2, 2, 2, 2, 2, 2, 2, 0], [3, 3, 3, 3, 3, 3, 3, 0]])


def test_mask_type_proportions_over_many_steps():
  """As the train step draws them: the run's key folded with the step; one type for the whole batch."""
  steps = 6000
  run_key = jax.random.key_data(jax.random.key(0))
  step_keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.wrap_key_data(run_key), s))(jnp.arange(steps))
  draws = np.asarray(jax.vmap(lambda k: unilm.mask_types(4, {"dropout": k}))(step_keys))
  assert (draws == draws[:, :1]).all()  # one mask type a batch
  again = np.asarray(jax.vmap(lambda k: unilm.mask_types(4, {"dropout": k}))(step_keys))
  np.testing.assert_array_equal(again, draws)
  counts = np.bincount(draws[:, 0], minlength=4)
  for count, p in zip(counts, unilm.PROPORTIONS):
    low, high = stats.binom.ppf([1e-6, 1 - 1e-6], steps, p)
    assert low <= count <= high, (counts, unilm.PROPORTIONS)
  assert stats.chisquare(counts, np.asarray(unilm.PROPORTIONS) * steps).pvalue > 1e-4
  eval_types = np.asarray(unilm.mask_types(12, None))  # no key (evaluation): every type in each batch
  np.testing.assert_array_equal(np.bincount(eval_types, minlength=4), [4, 4, 2, 2])


def _random_hf_bert() -> transformers.BertForPreTraining:
  config = transformers.BertConfig(vocab_size=97, hidden_size=32, num_attention_heads=4, intermediate_size=37,
                                   num_hidden_layers=2, max_position_embeddings=24, type_vocab_size=6,
                                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  torch.manual_seed(0)
  model = transformers.BertForPreTraining(config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return model


def _inputs(length: int = 12) -> dict:
  rng = np.random.default_rng(0)
  real = (np.arange(length)[None] < np.array([[12], [9], [7], [10]])).astype(np.int32)
  types = ((np.arange(length)[None] >= 4) * real).astype(np.int32)
  ids = np.where(real, rng.integers(3, 97, real.shape), 0).astype(np.int32)
  return {"input_ids": ids, "token_type_ids": types, "attention_mask": real}


def test_full_mask_matches_transformers():
  """Our BERT with a [B, L, L] mask against BertForPreTraining given the same mask (as [B, 1, L, L]: the form
  transformers 5 takes as it is); a [B, 1, L, L] mask gives ours the same, and the broadcast padding mask the
  padding mask's outputs."""
  hf_model = _random_hf_bert()
  model_config, params = convert.from_hf({k: v.numpy() for k, v in hf_model.state_dict().items()},
                                         hf_model.config.to_dict())
  model = models.build_model(model_config)
  batch = _inputs()
  types = jnp.arange(4, dtype=jnp.int32)  # one row per mask type
  masks_BLL = unilm.self_attention_masks(jnp.asarray(batch["attention_mask"]), jnp.asarray(batch["token_type_ids"]),
                                         types)
  segments_BL = unilm.lm_segment_ids(jnp.asarray(batch["attention_mask"]), jnp.asarray(batch["token_type_ids"]),
                                     types)

  def ours(params, mask):
    return model.apply({"params": params}, jnp.asarray(batch["input_ids"]), segments_BL, mask)

  full, full_4d, padded, broadcast = _run(
      lambda p: (ours(p, masks_BLL), ours(p, masks_BLL[:, None]), ours(p, jnp.asarray(batch["attention_mask"])),
                 ours(p, jnp.broadcast_to(jnp.asarray(batch["attention_mask"])[:, None, :], masks_BLL.shape))), params)
  additive = torch.where(torch.from_numpy(np.array(masks_BLL))[:, None], 0.0, torch.finfo(torch.float32).min)
  with torch.no_grad():
    expected = hf_model(input_ids=torch.from_numpy(batch["input_ids"]).long(), attention_mask=additive,
                        token_type_ids=torch.from_numpy(np.array(segments_BL)).long(), output_hidden_states=True)
  real = batch["attention_mask"].astype(bool)
  np.testing.assert_allclose(np.asarray(full["sequence_output"])[real], expected.hidden_states[-1].numpy()[real],
                             atol=1e-4, rtol=0)
  np.testing.assert_allclose(np.asarray(full["mlm_logits"])[real], expected.prediction_logits.numpy()[real],
                             atol=1e-4, rtol=0)
  np.testing.assert_allclose(full["sentence_logits"], expected.seq_relationship_logits.numpy(), atol=1e-4, rtol=0)
  for key in ("sequence_output", "mlm_logits"):
    np.testing.assert_array_equal(full_4d[key], full[key])
    np.testing.assert_allclose(broadcast[key], padded[key], atol=1e-5, rtol=0)
    assert np.abs(np.asarray(full[key])[real] - np.asarray(padded[key])[real]).max() > 1e-2  # the masks matter


def test_each_mask_hides_what_it_should():
  """Left-to-right: position i's output does not depend on tokens after i; right-to-left: not on tokens before i;
  seq2seq: segment A's outputs do not depend on B. Each perturbation does change the outputs it may reach."""
  config = config_lib.load_config("unilm_tiny", SMALL)
  model = models.build_model(config.model)
  batch = _inputs()
  example = {k: jnp.asarray(v) for k, v in batch.items()}
  params = _run(lambda: model.init(jax.random.key(0), example["input_ids"], example["token_type_ids"],
                                   example["attention_mask"])["params"])
  row, cut, length = 0, 6, 12  # row 0: twelve real tokens, A = 0..3, B = 4..11
  changed = batch["input_ids"].copy()
  tail_ids = changed.copy()
  tail_ids[row, cut + 1:] = (tail_ids[row, cut + 1:] + 7) % 90 + 3
  head_ids = changed.copy()
  head_ids[row, :cut] = (head_ids[row, :cut] + 7) % 90 + 3
  b_ids = changed.copy()
  b_ids[row, 4:] = (b_ids[row, 4:] + 7) % 90 + 3

  def outputs(ids, mask_type):
    types = jnp.full((ids.shape[0],), mask_type, jnp.int32)
    mask = unilm.self_attention_masks(jnp.asarray(batch["attention_mask"]), jnp.asarray(batch["token_type_ids"]),
                                      types)
    return model.apply({"params": params}, jnp.asarray(ids), jnp.asarray(batch["token_type_ids"]), mask)[
        "sequence_output"][row]

  base_l2r, tail_l2r, base_r2l, head_r2l, base_s2s, b_s2s = (np.asarray(x) for x in _run(
      lambda: (outputs(batch["input_ids"], 2), outputs(tail_ids, 2), outputs(batch["input_ids"], 3),
               outputs(head_ids, 3), outputs(batch["input_ids"], 1), outputs(b_ids, 1))))
  np.testing.assert_allclose(tail_l2r[:cut + 1], base_l2r[:cut + 1], atol=1e-6, rtol=0)
  assert np.abs(tail_l2r[cut + 1:] - base_l2r[cut + 1:]).max(axis=1).min() > 1e-3
  np.testing.assert_allclose(head_r2l[cut:], base_r2l[cut:], atol=1e-6, rtol=0)
  assert np.abs(head_r2l[:cut] - base_r2l[:cut]).max(axis=1).min() > 1e-3
  np.testing.assert_allclose(b_s2s[:4], base_s2s[:4], atol=1e-6, rtol=0)
  assert np.abs(b_s2s[4:length] - base_s2s[4:length]).max(axis=1).min() > 1e-3


def test_config_checks(tmp_path):
  from bert_jax.errors import UserError

  with pytest.raises(UserError, match="type_vocab_size=6"):
    get_objective(config_lib.load_config("unilm_tiny", ["model.type_vocab_size=2"]))
  with pytest.raises(UserError, match="packing=pairs"):
    get_objective(config_lib.load_config("unilm_tiny", ["objective.packing=full_sentences",
                                                        "objective.sentence_task=none"]))
  get_objective(config_lib.load_config("unilm_tiny", ["model.type_vocab_size=2", "objective.lm_segments=false"]))


# Characters (94 ids on the demo corpus), 40% of them masked: context a tiny model picks up in 150 steps (word pieces
# at 15% take about 1000 to leave the most frequent piece behind).
LEARNING = ["--config.data.tokenizer_type=character", "--config.model.vocab_size=94", "--config.data.seq_len=32",
            "--config.objective.mask_rate=0.4", "--config.objective.max_predictions=12", "--config.model.dropout=0",
            "--config.model.attention_dropout=0",
            "--config.train.steps=150", "--config.train.batch_size=32", "--config.optimizer.warmup_steps=15",
            "--config.optimizer.learning_rate=5e-3", "--config.checkpoint.every=150", "--config.eval.every=150",
            "--config.train.log_every=50"]


def test_tiny_unilm_learns_through_the_cli_and_exports_as_bert(tmp_path):
  from bert_jax.data import pipeline

  workdir = tmp_path / "run"
  assert cli.main(["train", "--config", "configs/unilm_tiny.py", "--workdir", str(workdir), *LEARNING]) == 0
  held_out = json.loads((workdir / "eval" / "150.json").read_text())  # the held-out batches `evaluate` reads
  config = config_lib.load_config(str(workdir / "config.json"))
  targets = np.concatenate([batch["masked_ids"].numpy()[batch["masked_weights"].numpy() > 0] for batch in
                            pipeline.eval_dataset(config, get_objective(config), workdir, 0, 1)])
  most_frequent = np.bincount(targets).max() / len(targets)
  print({k: round(v, 3) for k, v in held_out.items() if "accuracy" in k}, "most frequent", round(most_frequent, 3))
  assert held_out["mlm_accuracy"] > most_frequent + 0.03 and held_out["bidirectional_mlm_accuracy"] > most_frequent

  out = tmp_path / "hf"
  assert cli.main(["convert", "--to-hf", "--config", str(workdir / "config.json"), "--params",
                   str(workdir / "checkpoints" / "150"), "--output", str(out)]) == 0
  hf_config = json.loads((out / "config.json").read_text())
  assert hf_config["model_type"] == "bert" and hf_config["type_vocab_size"] == 6
  for model_cls in (transformers.BertForMaskedLM, transformers.BertForPreTraining):
    _, info = model_cls.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
  state_dict, _ = weights.read_hf_dir(out)
  assert state_dict["bert.embeddings.token_type_embeddings.weight"].shape == (6, 64)
  assert {"unilm", "lm_segments"} <= {config.objective.name, *config.objective} and config.model.family == "bert"


def test_recipe_masks_bigrams_and_trigrams_a_fifth_of_the_time():
  """unilm_large's cloze spans: 15% of the tokens, 80% of the spans one token, 20% a bigram or trigram (0.1 each,
  assumed), where p(n) ~ 1/n would give 0.55 / 0.27 / 0.18."""
  from bert_jax.data.tf_cpu import tf
  from bert_jax.objectives import masked_lm_data

  o = config_lib.load_config("unilm_large").objective
  assert (o.name, o.mask_rate, o.mask_token_fraction, o.random_token_fraction) == ("unilm", 0.15, 0.8, 0.1)
  rows, length = 400, 130
  special = np.zeros(64, bool)
  special[:4] = True  # pad, [CLS], [SEP], [MASK]
  ids = np.random.default_rng(0).integers(4, 64, (rows, length)).astype(np.int32)
  ids[:, 0], ids[:, -1] = 1, 2
  tables = masked_lm_data.Tables(tf.constant(special), tf.constant(~special),
                                 tf.constant(np.arange(4, 64, dtype=np.int32)), 3)
  span_ids = masked_lm_data.choose_spans(tf.constant(ids), tf.constant([0, 1], tf.int64), tables, o.mask_rate,
                                  o.max_predictions, o.whole_word, o.max_ngram, ngram_weights=o.ngram_weights).numpy()
  assert ((span_ids > 0).sum(axis=1) == round(0.15 * (length - 2))).all()
  lengths = np.concatenate([np.bincount(row)[1:] for row in span_ids])
  shares = np.bincount(lengths, minlength=4)[1:] / len(lengths)
  np.testing.assert_allclose(shares, [0.8, 0.1, 0.1], atol=0.03)
