"""MASS's fragment (objectives/mass_data.py, mass.py) against a port of the release's sampling
(tests/original_ports.py, microsoft/MASS restricted_mask_sent) on the same sentences: the fragment's length, where it
starts, how the encoder shows it, the decoder's inputs and places; the rows the objective makes, on BART's framing
and T5's."""

from data_helpers import as_dataset
import numpy as np
from original_ports import mass_mask_sentence
import pytest
import scipy.stats

from bert_jax import config as config_lib
from bert_jax.data.tf_cpu import tf
from bert_jax.objectives import mass, mass_data

V, PAD, EOS, BOS, MASK = 64, 0, 1, 3, 5
ORDINARY = np.arange(6, V, dtype=np.int32)


def fragment(**overrides) -> mass_data.Fragment:
  return mass_data.Fragment(start=BOS, lead=True, eos=EOS, mask=MASK, replacements=tf.constant(ORDINARY),
                            **overrides)


def random_sentences(count: int, seed: int = 0) -> list[np.ndarray]:
  rng = np.random.default_rng(seed)
  return [rng.choice(ORDINARY, rng.integers(1, 41)).astype(np.int32) for _ in range(count)]


def masked(sentences: list[np.ndarray], settings: mass_data.Fragment, seed: int = 7) -> list[dict]:
  dataset = tf.data.Dataset.from_generator(lambda: iter(sentences), output_signature=tf.TensorSpec([None], tf.int32))
  return list(dataset.enumerate().map(
      lambda i, tokens: mass_data.mask_fragment(tokens, settings, tf.stack([tf.constant(seed, tf.int64), i]))
  ).as_numpy_iterator())


def test_fragment_length_is_the_releases_round_half_to_even():
  lengths = np.arange(3, 300)
  expected = [min(max(round(n * 0.5), 1), n - 1) for n in lengths]
  np.testing.assert_array_equal(mass_data.fragment_length(lengths, 0.5), expected)
  assert list(mass_data.fragment_length(np.array([3, 5, 7]), 0.5)) == [2, 2, 4]  # 1.5 -> 2, 2.5 -> 2, 3.5 -> 4
  in_graph = [int(mass_data.fragment_length(tf.constant(n), 0.3)) for n in (3, 10, 25, 101)]
  assert in_graph == list(mass_data.fragment_length(np.array([3, 10, 25, 101]), 0.3))


def test_decoder_inputs_targets_and_places_are_the_sentence_shifted():
  sentences = random_sentences(300, seed=1)
  for tokens, out in zip(sentences, masked(sentences, fragment())):
    framed = np.concatenate([[BOS], tokens, [EOS]])
    places = out["places"]
    assert len(places) == mass_data.fragment_length(len(framed), 0.5)
    np.testing.assert_array_equal(places, np.arange(places[0], places[0] + len(places)))  # contiguous
    np.testing.assert_array_equal(out["previous"], framed[places])
    np.testing.assert_array_equal(out["target"], framed[places + 1])
    outside = np.ones(len(framed), bool)
    outside[places + 1] = False
    np.testing.assert_array_equal(out["source"][outside], framed[outside])  # only the fragment is touched


def test_fragment_statistics_match_the_release_port():
  """The same 4000 sentences (1 to 40 tokens) through ours and the port: identical fragment lengths; where the
  fragment starts (first place, last, elsewhere; the relative place of the others) and how the encoder shows its
  tokens ([MASK], random, kept) alike by chi-square and Kolmogorov-Smirnov tests."""
  sentences = random_sentences(4000, seed=2)
  ours = masked(sentences, fragment())
  rng = np.random.default_rng(3)
  starts = {"ours": [], "release": []}
  shown = {"ours": np.zeros(3), "release": np.zeros(3)}
  for tokens, out in zip(sentences, ours):
    framed = np.concatenate([[EOS], tokens, [EOS]])
    source, previous, positions, target = mass_mask_sentence(framed, 0.5, (0.8, 0.1, 0.1), MASK, V, rng)
    np.testing.assert_array_equal(previous, framed[positions])
    np.testing.assert_array_equal(target, framed[positions + 1])
    assert len(out["target"]) == len(target)
    choices = len(framed) - len(target)
    for name, first, shown_tokens, hidden in (("ours", out["places"][0] + 1, out["source"][out["places"] + 1],
                                               out["target"]), ("release", positions[0] + 1, source[positions + 1],
                                                                target)):
      starts[name].append((first, choices))
      is_mask = shown_tokens == MASK
      shown[name] += [is_mask.sum(), (~is_mask & (shown_tokens != hidden)).sum(), (shown_tokens == hidden).sum()]

  def kinds(pairs):
    return np.array([[first == 1 and choices > 1, first == choices and choices > 1, 1 < first < choices]
                     for first, choices in pairs]).sum(0)

  table = np.array([kinds(starts["ours"]), kinds(starts["release"])])
  assert scipy.stats.chi2_contingency(table).pvalue > 1e-3, table
  between = {name: [(first - 2) / (choices - 3) for first, choices in pairs if 1 < first < choices and choices > 3]
             for name, pairs in starts.items()}
  assert scipy.stats.ks_2samp(between["ours"], between["release"]).pvalue > 1e-3
  expected_first = np.mean([0.2 + 0.6 / choices for _, choices in starts["ours"] if choices > 1])
  observed_first = table[0, 0] / sum(1 for _, choices in starts["ours"] if choices > 1)
  assert abs(observed_first - expected_first) < 0.02, (observed_first, expected_first)
  assert scipy.stats.chi2_contingency(np.array([shown["ours"], shown["release"]])).pvalue > 1e-3, shown
  share = shown["ours"] / shown["ours"].sum()
  np.testing.assert_allclose(share, [0.8, 0.1, 0.1], atol=0.01)  # a random token equal to its own: rare at V 64


def test_start_probabilities_follow_the_settings():
  sentences = [np.arange(6, 26, dtype=np.int32)] * 2000  # 20 tokens: l 22, 11 tokens, 11 starting places
  for at_first, at_last in ((1.0, 0.0), (0.0, 1.0), (0.0, 0.0)):
    firsts = np.array([out["places"][0] + 1 for out in masked(sentences, fragment(at_first=at_first,
                                                                                  at_last=at_last))])
    if at_first == 1.0:
      assert np.all(firsts == 1)
    elif at_last == 1.0:
      assert np.all(firsts == 11)
    else:
      assert scipy.stats.chisquare(np.bincount(firsts, minlength=12)[1:]).pvalue > 1e-3


class FakeTokenizer:
  pad_id, eos_id, cls_id, mask_id = PAD, EOS, BOS, MASK

  def special_mask(self) -> np.ndarray:
    return np.arange(V) < 6


def documents(seed: int) -> list[dict]:
  rng = np.random.default_rng(seed)
  found = []
  for _ in range(30):
    lengths = rng.integers(1, 12, rng.integers(1, 6)).astype(np.int32)
    lengths[rng.random(len(lengths)) < 0.1] = 30  # longer than a row: cut into pieces
    found.append({"token_ids": rng.choice(ORDINARY, lengths.sum()).astype(np.int32), "sentence_lengths": lengths})
  return found


@pytest.mark.parametrize("variant", ["", "t5"])
def test_rows_hold_one_sentence_each_with_its_fragment(variant):
  config = config_lib.load_config(f"mass_tiny:{variant}" if variant else "mass_tiny", ["data.seq_len=16"])
  objective = mass.Mass(config)
  docs = documents(seed=4)
  rows = list(objective.dataset(as_dataset(docs), FakeTokenizer(), seed=3, train=True).as_numpy_iterator())
  lead = [BOS] if not variant else []
  T = objective.targets_length
  assert T == 8  # round(0.5 x 16)
  pieces = [piece for d in docs for sentence in np.split(d["token_ids"], np.cumsum(d["sentence_lengths"])[:-1])
            for piece in np.split(sentence, range(14, len(sentence), 14))]
  assert len(rows) == len(pieces)
  for row, piece in zip(rows, pieces):
    assert {k: v.shape for k, v in row.items()} == {**{k: (16,) for k in mass.SOURCE_FEATURES},
                                                    **{k: (T,) for k in mass.TARGET_FEATURES}}
    framed = np.array([*lead, *piece, EOS])
    n, k = row["attention_mask"].sum(), row["decoder_attention_mask"].sum()
    assert n == len(framed) and np.all(row["attention_mask"][:n] == 1) and np.all(row["input_ids"][n:] == PAD)
    assert k == mass_data.fragment_length(len(piece) + 2, 0.5) and np.all(row["labels"][k:] == PAD)
    places = row["decoder_positions"][:k]
    at = places + len(lead)  # where the fragment sits in this family's input
    np.testing.assert_array_equal(row["labels"][:k], framed[at])
    np.testing.assert_array_equal(row["decoder_input_ids"][:k], np.concatenate([[BOS if lead else PAD], framed])[at])
    np.testing.assert_array_equal(row["cross_attention_mask"], row["attention_mask"] * (row["input_ids"] != MASK))
    unmasked = np.ones(n, bool)
    unmasked[at] = False
    np.testing.assert_array_equal(row["input_ids"][:n][unmasked], framed[unmasked])


def test_settings_and_tokenizer_mismatches_are_one_line_errors():
  with pytest.raises(config_lib.UserError, match=r"^objective.start_at_first \+ objective.start_at_last must be at "
                                                 r"most 1, got 0.6 \+ 0.5$"):
    mass.Mass(config_lib.load_config("mass_tiny", ["objective.start_at_first=0.6", "objective.start_at_last=0.5"]))
  with pytest.raises(config_lib.UserError, match=r"^objective.fragment_ratio must be in \(0, 1\), got 1.0$"):
    mass.Mass(config_lib.load_config("mass_tiny", ["objective.fragment_ratio=1.0"]))
  config = config_lib.load_config("mass_tiny", ["model.bos_token_id=2"])
  with pytest.raises(config_lib.UserError, match=r"set --config.model.bos_token_id=3$"):
    mass.Mass(config).dataset(as_dataset([]), FakeTokenizer(), 0, True)
  with pytest.raises(config_lib.UserError, match="has one variant, t5"):
    config_lib.load_config("mass_tiny:bart")
