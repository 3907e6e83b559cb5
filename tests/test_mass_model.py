"""MASS on the encoder-decoders (objectives/mass.py): BART's decoder reads the places it is given (and the default
places are unchanged), T5's relative biases make places no input; the loss counts the fragment only; `predict` writes
each fragment greedily, token for token what the training forward pass ranks first."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from bert_jax import config as config_lib, models
from bert_jax.objectives import mass

WORDS = "[PAD] </s> [UNK] [CLS] [SEP] [MASK] the cat sat on a mat and dog ran far away".split()


class WordTokenizer:
  """One id per word (mass_tiny's special ids); decode joins the ordinary words."""
  pad_id, eos_id, cls_id, mask_id = 0, 1, 3, 5

  def encode(self, texts):
    return [[WORDS.index(w) for w in text.split()] for text in texts]

  def decode(self, ids):
    return " ".join(WORDS[i] if i < len(WORDS) else f"<{i}>" for i in ids if i > 5)


def tiny(variant: str = ""):
  config = config_lib.load_config(f"mass_tiny:{variant}" if variant else "mass_tiny", ["data.seq_len=16"])
  model = models.build_model(config.model)
  module = models.family(config.model)
  params = nn.meta.unbox(model.init(jax.random.key(0), **module.example_inputs(models.make_config(config.model)))
                         ["params"])
  return config, model, params


def decoder_logits(model, params, batch, positions):
  def run(module):
    encoded = module.encode(batch["input_ids"], batch["attention_mask"])
    return module.decode(encoded, batch["decoder_input_ids"], batch["cross_attention_mask"],
                         batch["decoder_attention_mask"], positions)
  return np.asarray(model.apply({"params": params}, method=run))


@pytest.mark.parametrize("variant", ["", "t5"])
def test_places_reach_bart_and_leave_t5_alone(variant):
  config, model, params = tiny(variant)
  batch = mass.Mass(config).synthetic_batch(2, np.random.default_rng(0))
  T = batch["labels"].shape[1]
  from_zero = decoder_logits(model, params, batch, np.broadcast_to(np.arange(T), (2, T)))
  np.testing.assert_allclose(decoder_logits(model, params, batch, None), from_zero, atol=1e-6)
  moved = decoder_logits(model, params, batch, batch["decoder_positions"])
  assert (np.abs(moved - from_zero).max() > 1e-3) == (variant == "")


def test_the_loss_is_the_mean_over_the_fragment():
  config, model, params = tiny()
  objective = mass.Mass(config)
  batch = objective.synthetic_batch(3, np.random.default_rng(1))
  batch["decoder_attention_mask"][0, 3:] = 0
  sums, metrics = objective.forward(model, params, batch)
  counts = objective.counts(batch)
  assert float(counts["fragment"]) == batch["decoder_attention_mask"].sum()
  logits = decoder_logits(model, params, batch, batch["decoder_positions"]).astype(np.float64)
  log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(
      -1, keepdims=True)
  nll = -np.take_along_axis(log_probs, batch["labels"][..., None], -1)[..., 0]
  np.testing.assert_allclose(float(sums["fragment"]), (nll * batch["decoder_attention_mask"]).sum(), rtol=1e-5)
  summary = objective.summarize(sums, metrics, counts)
  assert set(summary) == {"loss", "fragment_loss", "fragment_accuracy", "fragment_perplexity"}


@pytest.mark.parametrize("variant", ["", "t5"])
def test_predict_writes_each_run_of_masks_as_the_forward_pass_ranks(variant):
  config, model, params = tiny(variant)
  objective = mass.Mass(config)
  texts = ["the cat [MASK] [MASK] a mat and the [MASK] ran", "the dog ran far away and sat on a mat"]
  records = objective.predict(model, params, WordTokenizer(), texts, top_k=1)
  assert [r["input"] for r in records] == texts
  assert [p["blank"] for p in records[0]["predictions"]] == ["[MASK] [MASK]", "[MASK]"]
  # the second text has no [MASK]: its middle round(0.5 x 12) = 6 of 10 words, from the third, are masked and written
  assert [p["blank"] for p in records[1]["predictions"]] == ["ran far away and sat on"]
  # Teacher-forced, the tokens the greedy loop writes are what the forward pass ranks first at every place: the loop
  # feeds the same inputs at the same places as training does.
  tokenizer, lead, rows, previous, firsts, lengths = WordTokenizer(), [3] if variant == "" else [], [], [], [], []
  for text in texts:
    ids, runs, _ = objective.mask_text(tokenizer, text, 0)
    for first, length in runs:
      rows.append(lead + ids + [1])
      previous.append(([lead[0] if lead else 0] + ids)[first])
      firsts.append(first)
      lengths.append(length)
  source = np.array(rows, np.int32)  # the two texts have the same number of words
  places = np.array(firsts, np.int32)[:, None] + np.arange(max(lengths), dtype=np.int32)
  cross = (source != 5).astype(np.int32)
  written = np.asarray(mass._greedy(model, params, source, np.ones_like(source), cross, np.array(previous, np.int32),
                                    places))
  inputs = np.concatenate([np.array(previous, np.int32)[:, None], written[:, :-1]], 1)
  batch = {"input_ids": source, "attention_mask": np.ones_like(source), "cross_attention_mask": cross,
           "decoder_input_ids": inputs, "decoder_attention_mask": np.ones_like(inputs)}
  np.testing.assert_array_equal(decoder_logits(model, params, batch, places).argmax(-1), written)
  fills = [p["text"] for r in records for p in r["predictions"]]
  assert fills == [tokenizer.decode([t for t in row[:n] if t != 1]) for row, n in zip(written, lengths)]
