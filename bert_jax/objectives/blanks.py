"""Text with blanks, as `bert-jax predict` takes it, and the records of what a model puts in them.

A masked LM (BERT, RoBERTa, ALBERT; XLNet's permutation LM) guesses one piece at each `[MASK]` (or `<mask>`); T5
fills each `<extra_id_N>` with a span; BART rewrites the whole text, a `<mask>` standing for a span of any length.
The text between blanks is encoded stretch by stretch (each as the tokenizer encodes it alone, the spaces at its
ends dropped but for one before a word that follows a blank), so a blank between words stands for a whole word's
piece; each blank becomes its id. One record per text:

  {"input": the text, "output": the text as written with every blank filled by the model's choice,
   "predictions": [{"blank": "[MASK]" or "<extra_id_N>", "text": what fills it,
                    "candidates": [{"token", "id", "probability"}, ...]}]}   (candidates: the top k; masked LMs)
"""

from collections.abc import Callable, Sequence
import difflib
import re

import numpy as np

from bert_jax.errors import UserError

MASK_MARKER = re.compile(r"\[MASK\]|<mask>")
SENTINEL_MARKER = re.compile(r"<extra_id_(\d+)>")


def encode(tokenizer, text: str, marker: re.Pattern, blank_id: Callable[[re.Match], int], what: str,
           index: int) -> tuple[list[int], list[int], list[str]]:
  """(ids, positions of the blanks in them, the blanks as written) of input number `index`."""
  ids: list[int] = []
  positions: list[int] = []
  names: list[str] = []
  start = 0
  for match in marker.finditer(text):
    ids += _stretch(tokenizer, text[start:match.start()], bool(positions))
    positions.append(len(ids))
    names.append(match.group(0))
    ids.append(blank_id(match))
    start = match.end()
  ids += _stretch(tokenizer, text[start:], bool(positions))
  if not positions:
    raise UserError(f"input {index + 1} ({_short(text)}) has no {what}; write {what} where the model should fill in")
  return ids, positions, names


def _stretch(tokenizer, text: str, after_blank: bool) -> list[int]:
  """The ids of the text between blanks; after a blank, a leading space stays one space (SentencePiece drops it
  and marks the word with its prefix anyway; byte-level BPE needs it to mark the word)."""
  stripped = text.strip()
  if after_blank and stripped and text[:1].isspace():
    stripped = " " + stripped
  return list(tokenizer.encode([stripped])[0]) if stripped else []


def _short(text: str) -> str:
  return repr(text if len(text) <= 40 else text[:37] + "...")


def check_length(length: int, limit: int | None, text: str, index: int) -> None:
  """Inputs longer than the model's position table are refused (truncating could cut off the blanks)."""
  if limit is not None and length > limit:
    raise UserError(f"input {index + 1} ({_short(text)}) is {length} tokens with the special tokens, more than the "
                    f"model's {limit} positions; shorten it")


def pad(rows: Sequence[Sequence[int]], value: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """([B, L] int32 rows padded with `value` to the longest, [B, L] int32 1 where a row has a token)."""
  length = max(len(row) for row in rows)
  ids = np.full((len(rows), length), value, np.int32)
  mask = np.zeros((len(rows), length), np.int32)
  for i, row in enumerate(rows):
    ids[i, :len(row)] = row
    mask[i, :len(row)] = 1
  return ids, mask


def fill_masks(texts: Sequence[str], tokenizer, top_k: int, limit: int | None,
               frame: Callable[[list[int]], tuple[list[int], list[int], int]],
               logits_at: Callable[..., np.ndarray]) -> list[dict]:
  """Records of a masked LM's guesses at the [MASK]s of each text. frame(ids) -> (the model's input ids, their token
  types, the offset of ids in them); logits_at(ids_BL, types_BL, mask_BL, positions_BP) -> [B, P, vocab] logits."""
  encoded, framed = [], []
  for i, text in enumerate(texts):
    ids, positions, names = encode(tokenizer, text, MASK_MARKER, lambda _: tokenizer.mask_id, "[MASK]", i)
    model_ids, types, offset = frame(ids)
    check_length(len(model_ids), limit, text, i)
    encoded.append((ids, positions, names))
    framed.append((model_ids, types, [p + offset for p in positions]))
  ids_BL, mask_BL = pad([f[0] for f in framed], tokenizer.pad_id)
  types_BL, _ = pad([f[1] for f in framed])
  most = max(len(f[2]) for f in framed)  # a row with fewer blanks repeats its first: no other token becomes one
  positions_BP = np.array([f[2] + f[2][:1] * (most - len(f[2])) for f in framed], np.int32)
  logits_BPV = np.asarray(logits_at(ids_BL, types_BL, mask_BL, positions_BP), np.float64)
  probs_BPV = np.exp(logits_BPV - logits_BPV.max(-1, keepdims=True))
  probs_BPV /= probs_BPV.sum(-1, keepdims=True)
  records = []
  for (_, _, names), text, probs_PV in zip(encoded, texts, probs_BPV):
    predictions = []
    for p, name in enumerate(names):
      top = np.argsort(-probs_PV[p], kind="stable")[:top_k]
      candidates = [{"token": tokenizer.decode([int(t)]).strip(), "id": int(t),
                     "probability": float(probs_PV[p, t])} for t in top]
      predictions.append({"blank": name, "text": candidates[0]["token"], "candidates": candidates})
    records.append({"input": text, "output": _filled(text, MASK_MARKER, iter(p["text"] for p in predictions)),
                    "predictions": predictions})
  return records


def _filled(text: str, marker: re.Pattern, fills) -> str:
  """The text as the user wrote it, each blank replaced by the next of `fills`, spaces collapsed."""
  return " ".join(marker.sub(lambda _: next(fills), text).split())


def fill_spans(text: str, tokenizer, decoded: Sequence[int], eos_id: int) -> dict:
  """The record of T5's decoded targets (<extra_id_N> span <extra_id_M> span ... EOS) for `text`: each sentinel of
  the text replaced by the span the model wrote after the same sentinel (empty when it wrote none)."""
  decoded = [int(i) for i in decoded]
  decoded = decoded[:decoded.index(eos_id)] if eos_id in decoded else decoded
  spans: dict[int, list[int]] = {}
  current: int | None = None
  for token in decoded:
    if token >= tokenizer.piece_count:  # a sentinel: <extra_id_N> is id vocab_size - 1 - N
      current = tokenizer.vocab_size - 1 - token
      spans.setdefault(current, [])
    elif current is not None:
      spans[current].append(token)
  filled = {int(n): tokenizer.decode(spans.get(int(n), [])) for n in SENTINEL_MARKER.findall(text)}
  output = _filled(text, SENTINEL_MARKER, (filled[int(n)] for n in SENTINEL_MARKER.findall(text)))
  return {"input": text, "output": output,
          "predictions": [{"blank": f"<extra_id_{n}>", "text": span} for n, span in filled.items()]}


def fill_rewritten(text: str, tokenizer, source: Sequence[int], rewrite: Sequence[int], mask_id: int) -> dict:
  """The record of BART's `rewrite` (the ids it decoded, without <s> and </s>) of `text` (whose ids are `source`, one
  mask_id a blank): the output is the whole rewrite; each blank's text is what the rewrite has where the source has
  that blank (difflib's alignment of the two id sequences; "" where the rewrite drops it)."""
  names = MASK_MARKER.findall(text)
  blanks = [i for i, token in enumerate(source) if token == mask_id]
  fills = [""] * len(blanks)
  matcher = difflib.SequenceMatcher(a=list(source), b=list(rewrite), autojunk=False)
  for tag, i1, i2, j1, j2 in matcher.get_opcodes():
    inside = [k for k, at in enumerate(blanks) if i1 <= at < i2]
    if tag != "equal" and inside:
      fills[inside[0]] = tokenizer.decode(list(rewrite[j1:j2])).strip()
  return {"input": text, "output": tokenizer.decode(list(rewrite)).strip(),
          "predictions": [{"blank": name, "text": fill} for name, fill in zip(names, fills)]}
