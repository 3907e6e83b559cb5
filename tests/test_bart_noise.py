"""BART's noise (objectives/text_infilling_data.py, text_infilling.py) against scipy's Poisson and a port of fairseq's
sampling
(tests/original_ports.py) on the same blocks: the words masked, span lengths, 0-length spans as insertions, sentence
permutation; spans rebuilt position by position with fairseq's own deletion loop; the rows the objective makes."""

import itertools
import math

from data_helpers import as_dataset
import numpy as np
from original_ports import fairseq_permute_sentences, fairseq_whole_word_mask
import pytest
import scipy.stats
import torch

from bert_jax import config as config_lib
from bert_jax.data.tf_cpu import tf
from bert_jax.objectives import text_infilling, text_infilling_data

V, EOS, PAD, BOS, MASK = 64, 0, 1, 3, 5
ORDINARY = np.arange(6, V, dtype=np.int32)
WORD_START = np.arange(V) < 45  # ids 45.. continue the word before them


def noise(**overrides) -> text_infilling_data.Noise:
  return text_infilling_data.Noise(bos=BOS, eos=EOS, mask=MASK, word_start_V=tf.constant(WORD_START),
                         replacements=tf.constant(ORDINARY), **overrides)


def random_blocks(count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
  """(tokens, sentence lengths) of blocks of 2 to 6 sentences of 3 to 20 ordinary tokens."""
  rng = np.random.default_rng(seed)
  blocks = []
  for _ in range(count):
    lengths = rng.integers(3, 21, rng.integers(2, 7)).astype(np.int32)
    blocks.append((rng.choice(ORDINARY, lengths.sum()).astype(np.int32), lengths))
  return blocks


def corrupted(blocks, settings: text_infilling_data.Noise, seed: int = 7) -> list[dict]:
  dataset = tf.data.Dataset.from_generator(
      lambda: iter(blocks), output_signature=(tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)))
  corrupt = lambda i, block: text_infilling_data.corrupt(block[0], block[1], settings,
                                                         tf.stack([tf.constant(seed, tf.int64), i]))
  return list(dataset.enumerate().map(corrupt).as_numpy_iterator())


def words_to_mask(tokens: np.ndarray, ratio: float = 0.3) -> int:
  return math.ceil(np.float32(WORD_START[tokens].sum()) * np.float32(ratio))


def fairseq_spans(target: np.ndarray, starts: list[int], lengths: list[int]) -> np.ndarray:
  """The source fairseq's add_whole_word_mask makes from given starts and span lengths (replace_length 1, no random
  tokens), by its own loop: each start becomes <mask>, then each span deletes the tokens after it word by word."""
  is_word_start = WORD_START[target].astype(np.int64)
  is_word_start[0], is_word_start[-1] = 0, 255
  source, keep = target.copy(), np.ones(len(target), bool)
  indices, remaining = np.array(starts), np.array(lengths) - 1
  source[indices] = MASK
  while len(indices):
    remaining = remaining - is_word_start[indices + 1]
    going = remaining >= 0
    indices, remaining = indices[going] + 1, remaining[going]
    keep[indices] = False
  return source[keep]


def test_span_length_table_is_fairseqs_truncated_poisson():
  probs = text_infilling_data.poisson_probs(3.0)
  pmf = scipy.stats.poisson.pmf(np.arange(len(probs)), 3.0)
  assert pmf[-1] < 1e-7 <= pmf[-2]  # cut after the first probability below 1e-7, as fairseq's loop does
  np.testing.assert_allclose(probs, pmf / pmf.sum(), rtol=1e-5)


def test_span_lengths_are_poisson_and_meet_the_budget_exactly():
  lengths = text_infilling_data.span_lengths(tf.constant(30_000), 3.0, tf.constant([1, 2], tf.int64)).numpy()
  assert lengths.sum() == 30_000 and 0 <= lengths[-1]
  head = lengths[:6000]  # far before the budget is reached: independent draws
  observed = np.bincount(np.minimum(head, 9), minlength=10)
  pmf = scipy.stats.poisson.pmf(np.arange(9), 3.0)
  expected = np.append(pmf, 1 - pmf.sum()) * len(head)
  assert scipy.stats.chisquare(observed, expected).pvalue > 1e-3
  assert abs(head.mean() - 3.0) < 0.1
  assert text_infilling_data.span_lengths(tf.constant(0), 3.0, tf.constant([1, 2], tf.int64)).numpy().size == 0


def test_spans_rebuilt_position_by_position_with_fairseqs_loop():
  blocks = random_blocks(300)
  for (tokens, _), out in zip(blocks, corrupted(blocks, noise(permute_sentences=False, random_ratio=0.0))):
    target = np.concatenate([[BOS], tokens, [EOS]])
    np.testing.assert_array_equal(out["target"], target)
    lengths, starts = out["lengths"], out["starts"]
    assert lengths.sum() == words_to_mask(tokens)
    assert len(starts) == np.count_nonzero(lengths) and len(set(starts)) == len(starts)
    assert np.all(WORD_START[target[starts]]) and np.all((starts > 0) & (starts < len(target) - 1))
    after_spans = fairseq_spans(target, list(starts), list(lengths[lengths > 0]))
    inserts = np.count_nonzero(lengths == 0)  # each 0-length span adds one <mask> somewhere inside
    source = out["source"]
    assert len(source) == len(after_spans) + inserts and source[0] == BOS and source[-1] == EOS
    np.testing.assert_array_equal(source[source != MASK], after_spans[after_spans != MASK])
    assert np.count_nonzero(source == MASK) == np.count_nonzero(after_spans == MASK) + inserts


def test_a_short_block_by_hand():
  """Tokens 10 50 11 12 51 13 (50, 51 continue words): 4 words, ceil(1.2) = 2 to mask; a 2-word span from each
  possible start, and the end stops a span before </s>."""
  tokens = np.array([10, 50, 11, 12, 51, 13], np.int32)
  outs = corrupted([(tokens, np.array([6], np.int32))] * 40, noise(permute_sentences=False, random_ratio=0.0))
  seen = set()
  for out in outs:
    assert out["lengths"].sum() == 2
    if list(out["lengths"]) == [2]:  # one span of two words from a start: it takes whole words only
      expected = {1: [BOS, MASK, 12, 51, 13, EOS], 3: [BOS, 10, 50, MASK, 13, EOS], 4: [BOS, 10, 50, 11, MASK, EOS],
                  6: [BOS, 10, 50, 11, 12, 51, MASK, EOS]}[int(out["starts"][0])]
      assert list(out["source"]) == expected, out
      seen.add(int(out["starts"][0]))
  assert len(seen) >= 2


def test_share_masked_and_noise_counts_match_fairseqs_sampling():
  """The same 1000 blocks through ours and the port: share of tokens hidden (masked or deleted), masks in the source,
  spans and insertions per block, source length."""
  blocks = random_blocks(1000, seed=1)
  ours = corrupted(blocks, noise(permute_sentences=False, random_ratio=0.0))
  probs = text_infilling_data.poisson_probs(3.0)
  torch.manual_seed(0)
  stats = {"ours": [], "fairseq": []}
  for (tokens, _), out in zip(blocks, ours):
    target = np.concatenate([[BOS], tokens, [EOS]])
    source, drawn, _ = fairseq_whole_word_mask(torch.tensor(target, dtype=torch.long),
                                               torch.tensor(WORD_START[target]), 0.3, probs, MASK, 0.0, V)
    for name, src, lengths in (("ours", out["source"], list(out["lengths"])), ("fairseq", source.numpy(), drawn)):
      assert sum(lengths) == words_to_mask(tokens)
      kept = np.count_nonzero(src != MASK) - 2
      stats[name].append((1 - kept / len(tokens), np.count_nonzero(src == MASK), len(lengths),
                          lengths.count(0), len(src) / len(target)))
  ours_mean, fairseq_mean = np.mean(stats["ours"], 0), np.mean(stats["fairseq"], 0)
  standard_error = np.hypot(np.std(stats["ours"], 0), np.std(stats["fairseq"], 0)) / np.sqrt(len(blocks))
  assert np.all(np.abs(ours_mean - fairseq_mean) < 4 * standard_error), (ours_mean, fairseq_mean, standard_error)
  word_share = np.mean([WORD_START[t].mean() for t, _ in blocks])
  assert 0.25 * word_share < ours_mean[0] < 0.36  # 30% of the words, in whole words, less overlaps
  assert 0.1 < ours_mean[3] < 0.6  # about e^-3 of the spans have length 0


def test_random_ratio_one_leaves_no_mask():
  blocks = random_blocks(100, seed=2)
  for out in corrupted(blocks, noise(random_ratio=1.0)):
    source = out["source"]
    assert MASK not in source and np.all(np.isin(source[1:-1], ORDINARY)), source


def test_random_tokens_replace_about_a_tenth_of_the_spans():
  blocks = random_blocks(600, seed=3)
  outs = corrupted(blocks, noise(permute_sentences=False))
  replaced = spans = 0
  for (tokens, _), out in zip(blocks, outs):
    target = np.concatenate([[BOS], tokens, [EOS]])
    lengths = out["lengths"]
    if np.count_nonzero(lengths == 0):
      continue
    after = fairseq_spans(target, list(out["starts"]), list(lengths[lengths > 0]))
    mask_here = after == MASK
    spans += mask_here.sum()
    replaced += np.count_nonzero(out["source"][mask_here] != MASK)
  assert spans > 1000 and abs(replaced / spans - 0.1) < 0.03


def sentence_orders(count: int) -> list[tuple[int, ...]]:
  """The order of three sentences (ids 10.., 20.., 30..) in the permuted tokens of `count` blocks."""
  tokens = np.array([10, 11, 20, 21, 22, 30], np.int32)
  dataset = tf.data.Dataset.range(count).map(
      lambda i: text_infilling_data.permute(tf.constant(tokens), tf.constant([2, 3, 1]),
                                            tf.stack([tf.constant(5, tf.int64), i])))
  orders = []
  for permuted in dataset.as_numpy_iterator():
    order = tuple(dict.fromkeys(permuted // 10))
    sentences = {1: [10, 11], 2: [20, 21, 22], 3: [30]}
    assert list(permuted) == [token for k in order for token in sentences[k]]  # whole sentences, each once
    orders.append(order)
  return orders


def test_sentences_are_permuted_uniformly_like_fairseq():
  all_orders = list(itertools.permutations((1, 2, 3)))
  ours = sentence_orders(1200)
  counts = [ours.count(o) for o in all_orders]
  assert scipy.stats.chisquare(counts).pvalue > 1e-3, counts
  torch.manual_seed(0)
  FULL_STOP = 9  # the port splits at full stops: [bos, 10 11 ., 20 21 22 ., 30 ., eos]
  source = torch.tensor([BOS, 10, 11, FULL_STOP, 20, 21, 22, FULL_STOP, 30, FULL_STOP, EOS])
  theirs = []
  for _ in range(1200):
    permuted = fairseq_permute_sentences(source, FULL_STOP).numpy()
    theirs.append(tuple(dict.fromkeys(x // 10 for x in permuted[1:-1] if x != FULL_STOP)))
  fairseq_counts = [theirs.count(o) for o in all_orders]
  table = np.array([counts, fairseq_counts])
  assert scipy.stats.chi2_contingency(table).pvalue > 1e-3, table


class FakeTokenizer:
  pad_id, eos_id, cls_id, mask_id = PAD, EOS, BOS, MASK

  def special_mask(self) -> np.ndarray:
    return np.arange(V) < 6

  def word_starts(self) -> np.ndarray:
    return WORD_START


@pytest.fixture(scope="module")
def rows_and_documents():
  config = config_lib.load_config("bart_tiny", ["data.seq_len=24"])
  objective = text_infilling.TextInfilling(config)
  rng = np.random.default_rng(4)
  documents = []
  for _ in range(30):
    lengths = rng.integers(1, 12, rng.integers(1, 8)).astype(np.int32)
    lengths[rng.random(len(lengths)) < 0.1] = 30  # longer than a block: cut into pieces
    documents.append({"token_ids": rng.choice(ORDINARY, lengths.sum()).astype(np.int32), "sentence_lengths": lengths})
  rows = list(objective.dataset(as_dataset(documents), FakeTokenizer(), seed=3, train=True).as_numpy_iterator())
  return rows, documents


def test_rows_hold_whole_sentence_blocks_and_shifted_decoder_inputs(rows_and_documents):
  rows, documents = rows_and_documents
  blocks = []
  for row in rows:
    assert set(row) == set(text_infilling.FEATURES) and all(v.shape == (24,) for v in row.values())
    n, m = row["decoder_attention_mask"].sum(), row["attention_mask"].sum()
    labels, source = row["labels"][:n], row["input_ids"][:m]
    assert labels[0] == BOS and labels[-1] == EOS and source[0] == BOS and source[-1] == EOS
    assert np.all(row["labels"][n:] == PAD) and np.all(row["input_ids"][m:] == PAD)
    np.testing.assert_array_equal(row["decoder_input_ids"][:n], np.concatenate([[EOS], labels[:-1]]))
    assert np.all(row["attention_mask"][:m] == 1) and np.all(row["attention_mask"][m:] == 0)
    blocks.append(labels[1:-1])
  # The blocks, in order, are the documents' text: each at most seq_len - 2 tokens, ending at a sentence end
  # (or a cut of a long sentence) and never spanning two documents.
  position = 0
  for document in documents:
    ends = set(np.cumsum(document["sentence_lengths"]))
    used = 0
    while used < len(document["token_ids"]):
      block = blocks[position]
      assert 0 < len(block) <= 22
      np.testing.assert_array_equal(block, document["token_ids"][used:used + len(block)])
      used += len(block)
      assert used in ends or len(block) > 11, (used, ends)
      position += 1
  assert position == len(blocks)


def test_mismatched_tokenizer_ids_are_user_errors():
  config = config_lib.load_config("bart_tiny", ["model.eos_token_id=2"])
  with pytest.raises(config_lib.UserError, match="eos_token_id"):
    text_infilling.TextInfilling(config).dataset(as_dataset([]), FakeTokenizer(), 0, True)
