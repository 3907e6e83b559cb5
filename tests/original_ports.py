"""Small ports of the original data generators' sampling, used as oracles by the statistical tests:
google-research/bert create_pretraining_data.py (segment pairs, NSP), google-research/albert's file of the
same name (SOP, whole-word n-gram masking), fairseq's denoising_dataset.py (BART's text infilling and sentence
permutation), zihangdai/xlnet's data_utils.py (the attention mask of a factorization order), microsoft/MASS's
trainer.py (MASS's masked fragment), huawei-noah's TinyBERT data_augmentation.py (the replacement loop). Only the
decisions are ported, not the output format."""

import math
import random

import numpy as np


def pair_labels(documents: list[list[int]], max_seq_length: int, short_seq_prob: float, task: str,
                rng: random.Random) -> list[bool]:
  """`is_random_next` of every instance create_instances_from_document makes from each document in turn
  (documents as lists of sentence lengths). nsp: BERT's rule; sop: ALBERT's (random_next_sentence=False)."""
  labels = []
  for document_index, document in enumerate(documents):
    max_num_tokens = max_seq_length - 3
    target = max_num_tokens
    if rng.random() < short_seq_prob:
      target = rng.randint(2, max_num_tokens)
    chunk, length, i = [], 0, 0
    while i < len(document):
      chunk.append(document[i])
      length += document[i]
      if i == len(document) - 1 or length >= target:
        a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
        if len(chunk) == 1 or (task == "nsp" and rng.random() < 0.5):
          random_next = True
          for _ in range(10):
            if rng.randint(0, len(documents) - 1) != document_index:
              break
          i -= len(chunk) - a_end  # the sentences after A go back for the next chunk
        else:
          random_next = task == "sop" and rng.random() < 0.5  # sop: A and B swapped
        labels.append(random_next)
        chunk, length = [], 0
      i += 1
  return labels


def ngram_lengths(tokens: list[int], special: np.ndarray, word_start: np.ndarray, masked_lm_prob: float,
                  max_predictions: int, max_ngram: int, rng: random.Random, np_rng: np.random.Generator
                  ) -> list[int]:
  """Words per masked n-gram chosen by ALBERT's create_masked_lm_predictions (do_whole_word_mask=True,
  favor_shorter_ngram=True) on one sequence of ids (no padding), in the order they are chosen."""
  cand_indexes = []
  for i, token in enumerate(tokens):
    if special[token]:
      continue
    if cand_indexes and not word_start[token]:
      cand_indexes[-1].append(i)
    else:
      cand_indexes.append([i])
  num_to_predict = min(max_predictions, max(1, int(round(len(tokens) * masked_lm_prob))))
  ngrams = np.arange(1, max_ngram + 1)
  pvals = 1.0 / ngrams
  pvals /= pvals.sum()
  ngram_indexes = [[cand_indexes[idx:idx + n] for n in ngrams] for idx in range(len(cand_indexes))]
  rng.shuffle(ngram_indexes)
  covered, chosen, lengths = set(), 0, []
  for cand_index_set in ngram_indexes:
    if chosen >= num_to_predict:
      break
    # len(cand_index_set) is always max_ngram: near the end of the sequence the slices just hold fewer words.
    n = int(np_rng.choice(ngrams, p=pvals))
    index_set = sum(cand_index_set[n - 1], [])
    n -= 1
    while chosen + len(index_set) > num_to_predict and n > 0:
      index_set = sum(cand_index_set[n - 1], [])
      n -= 1
    if chosen + len(index_set) > num_to_predict or covered & set(index_set):
      continue
    covered |= set(index_set)
    chosen += len(index_set)
    lengths.append(len(cand_index_set[n]))
  return lengths


def fairseq_whole_word_mask(source, is_word_start, p: float, span_probs: np.ndarray, mask_idx: int,
                            random_ratio: float, vocab_size: int):
  """fairseq's DenoisingDataset.add_whole_word_mask (span-poisson, replace_length 1) then its add_insertion_noise for
  the 0-length spans, with torch's global generator as the original draws; source and is_word_start are torch
  tensors over [bos ... eos]. Returns (source, the trimmed lengths, the span starts)."""
  import torch

  source, is_word_start = source.clone(), is_word_start.clone().long()
  is_word_start[0] = 0
  is_word_start[-1] = 0
  num_to_mask = math.ceil(is_word_start.float().sum() * p)
  if num_to_mask == 0:
    return source, [], []
  distribution = torch.distributions.Categorical(torch.tensor(span_probs))
  lengths = distribution.sample(sample_shape=(num_to_mask,))
  cum_length = torch.cumsum(lengths, 0)
  while cum_length[-1] < num_to_mask:
    lengths = torch.cat([lengths, distribution.sample(sample_shape=(num_to_mask,))], dim=0)
    cum_length = torch.cumsum(lengths, 0)
  i = 0
  while cum_length[i] < num_to_mask:
    i += 1
  lengths[i] = num_to_mask - (0 if i == 0 else cum_length[i - 1])
  num_to_mask = i + 1
  lengths = lengths[:num_to_mask]
  drawn = lengths.tolist()
  lengths = lengths[lengths > 0]
  num_inserts = num_to_mask - lengths.size(0)
  num_to_mask -= num_inserts
  if num_to_mask == 0:
    return fairseq_insert(source, num_inserts / source.size(0), mask_idx, random_ratio, vocab_size), drawn, []
  word_starts = is_word_start.nonzero(as_tuple=False)
  indices = word_starts[torch.randperm(word_starts.size(0))[:num_to_mask]].squeeze(1)
  starts = indices.tolist()
  mask_random = torch.FloatTensor(num_to_mask).uniform_() < random_ratio
  to_keep = torch.ones(source.size(0), dtype=torch.bool)
  is_word_start[-1] = 255  # acts as a long length, so spans don't go over the end of doc
  source[indices] = mask_idx
  source[indices[mask_random]] = torch.randint(1, vocab_size, size=(int(mask_random.sum()),))
  lengths -= 1
  while indices.size(0) > 0:
    lengths -= is_word_start[indices + 1].long()
    uncompleted = lengths >= 0
    indices = indices[uncompleted] + 1
    mask_random = mask_random[uncompleted]
    lengths = lengths[uncompleted]
    to_keep[indices] = 0
  source = source[to_keep]
  if num_inserts > 0:
    source = fairseq_insert(source, num_inserts / source.size(0), mask_idx, random_ratio, vocab_size)
  return source, drawn, starts


def fairseq_insert(tokens, p: float, mask_idx: int, random_ratio: float, vocab_size: int):
  """fairseq's DenoisingDataset.add_insertion_noise."""
  import torch

  num_tokens = len(tokens)
  n = math.ceil(num_tokens * p)
  noise_indices = torch.randperm(num_tokens + n - 2)[:n] + 1
  noise_mask = torch.zeros(size=(num_tokens + n,), dtype=torch.bool)
  noise_mask[noise_indices] = 1
  result = torch.LongTensor(n + len(tokens)).fill_(-1)
  num_random = math.ceil(n * random_ratio)
  result[noise_indices[num_random:]] = mask_idx
  result[noise_indices[:num_random]] = torch.randint(low=1, high=vocab_size, size=(num_random,))
  result[~noise_mask] = tokens
  return result


def fairseq_permute_sentences(source, full_stop_index: int):
  """fairseq's DenoisingDataset.permute_sentences with ratio 1.0 on [bos ... eos] (sentences end with full stops)."""
  import torch

  full_stops = source == full_stop_index
  full_stops[-2] = 1
  sentence_ends = (full_stops[1:] * ~full_stops[:-1]).nonzero(as_tuple=False) + 2
  result = source.clone()
  num_sentences = sentence_ends.size(0)
  num_to_permute = math.ceil((num_sentences * 2 * 1.0) / 2.0)
  substitutions = torch.randperm(num_sentences)[:num_to_permute]
  ordering = torch.arange(0, num_sentences)
  ordering[substitutions] = substitutions[torch.randperm(num_to_permute)]
  index = 1
  for i in ordering:
    sentence = source[(sentence_ends[i - 1] if i > 0 else 1):sentence_ends[i]]
    result[index:index + sentence.size(0)] = sentence
    index += sentence.size(0)
  return result


def xlnet_local_perm(inputs_N: np.ndarray, is_masked_N: np.ndarray, index_N: np.ndarray, sep_id: int, cls_id: int
                     ) -> tuple[np.ndarray, np.ndarray]:
  """XLNet's _local_perm on one part, with its factorization order given (index_N[k]: the place of position k)
  instead of drawn. Returns (perm_mask [N, N] bool, True where i may not attend to j; target_mask [N] bool).

  <sep> and <cls> ("functional" tokens) are never predicted but keep their place in the order; every other
  unmasked token is context, placed before the whole order. Context is visible to all and sees only context;
  an order token sees the context and the order tokens placed before it, and, unless it is predicted, itself."""
  func_N = (inputs_N == sep_id) | (inputs_N == cls_id)
  context_N = ~is_masked_N & ~func_N
  predicted_N = is_masked_N & ~func_N
  place_N = np.where(context_N, -1, index_N)
  sees_below_N = np.where(predicted_N, place_N, place_N + 1)  # i sees the order tokens placed below this
  perm_mask_NN = (place_N[None, :] >= sees_below_N[:, None]) & ~context_N[None, :]
  return perm_mask_NN, predicted_N


def xlnet_perm_mask(inputs_L: np.ndarray, is_masked_L: np.ndarray, index_L: np.ndarray, reuse_len: int,
                    sep_id: int, cls_id: int) -> tuple[np.ndarray, np.ndarray]:
  """The perm_mask [L, L] and target_mask [L] of XLNet's get_dataset parser: the reuse part and the rest each through
  xlnet_local_perm with their own order (index_L local to each part); the reuse part sees nothing of the rest, the
  rest all of the reuse part. reuse_len 0 (which the release does not allow) makes one part."""
  L = len(inputs_L)
  perm_mask_LL = np.zeros((L, L), bool)
  target_L = np.zeros(L, bool)
  for begin, end in ([(0, reuse_len), (reuse_len, L)] if reuse_len else [(0, L)]):
    part = slice(begin, end)
    perm_mask_LL[part, part], target_L[part] = xlnet_local_perm(inputs_L[part], is_masked_L[part], index_L[part],
                                                                sep_id, cls_id)
  perm_mask_LL[:reuse_len, reuse_len:] = True
  return perm_mask_LL, target_L


def mass_mask_sentence(words: np.ndarray, word_mass: float, pred_probs: tuple[float, float, float], mask_index: int,
                       n_words: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """microsoft/MASS MASS/src/trainer.py restricted_mask_sent (span_len left at 100000: one fragment) for one
  sentence `words` framed </s> ... </s>, with its mask_word: (encoder input, decoder input, decoder positions,
  decoder targets). The release takes the length from its batch, whose sentences all have one length; numpy's
  generator stands in for np.random, random.shuffle and torch.multinomial."""
  mask_len = round(len(words) * word_mass)
  segs = [mask_len]
  unmasked_tokens = [0] * (len(words) - mask_len - 1)
  p = rng.random()
  if p >= 0.8:
    shuf_segs = segs[1:] + unmasked_tokens
  elif p >= 0.6:
    shuf_segs = segs[:-1] + unmasked_tokens
  else:
    shuf_segs = segs + unmasked_tokens
  rng.shuffle(shuf_segs)
  if p >= 0.8:
    shuf_segs = segs[0:1] + shuf_segs
  elif p >= 0.6:
    shuf_segs = shuf_segs + segs[-1:]
  pos, curr = [], 1
  for seg in shuf_segs:
    if seg >= 1:
      pos.extend(curr + i for i in range(seg))
      curr += seg
    else:
      curr += 1
  pos_i = np.array(pos)
  output, target = words[pos_i].copy(), words[pos_i - 1].copy()
  probs = rng.choice(3, len(pos_i), p=pred_probs)  # 0 mask, 1 keep, 2 random
  shown = np.where(probs == 0, mask_index, np.where(probs == 1, words[pos_i], rng.integers(n_words, size=len(pos_i))))
  source = words.copy()
  source[pos_i] = shown
  return source, target, pos_i - 1, output


def tinybert_augment(tokens: list[str], candidate_words: dict[int, list[str]], n: int, p: float,
                     rng: random.Random) -> list[str]:
  """huawei-noah/Pretrained-Language-Model TinyBERT/data_augmentation.py DataAugmentor.augment after the candidates
  are found: the sentence (its basic tokens joined by spaces), then each new one of n draws where every token with
  candidates is replaced by a uniform choice among them with probability p."""
  sentences = [" ".join(tokens)]
  for _ in range(n):
    new = list(tokens)
    for index in candidate_words:
      choice = rng.choice(candidate_words[index])
      if rng.random() < p:
        new[index] = choice
    if " ".join(new) not in sentences:
      sentences.append(" ".join(new))
  return sentences
