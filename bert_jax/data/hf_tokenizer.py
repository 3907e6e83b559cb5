"""A published checkpoint's own tokenizer, through Hugging Face `tokenizers`: its ids, for continued pretraining.

`import_files(hf_dir, out_dir)` turns the tokenizer files of a Hugging Face model directory into one file in
out_dir that bert_jax.data.tokenizer.load reads, in this order of preference:
  tokenizer.json                 any fast tokenizer, copied as it is (what AutoTokenizer loads)
  spiece.model                   SentencePiece (ALBERT, XLNet, T5), copied; T5's sentinels become data.extra_ids
  vocab.json + merges.txt        byte-level BPE (RoBERTa, GPT-2, BART), built into tokenizer.json as
                                 RobertaTokenizer / GPT2Tokenizer tokenize (no prefix space)
  vocab.txt                      WordPiece (BERT), built into tokenizer.json as BertTokenizer tokenizes
                                 (tokenizer_config.json's do_lower_case, default true)

`HFTokenizer` offers what objectives and prepare use from a SentencePiece Tokenizer. Text is encoded without the
checkpoint's own special tokens: the objectives place [CLS]/<s>, [SEP]/</s>, [MASK]/<mask> and sentinels
themselves, with the ids found here by name (the first of each role's names the vocabulary has).
"""

from collections.abc import Iterable
import hashlib
import json
import re

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers

from bert_jax.errors import UserError
from bert_jax.files import storage

ROLES = {"pad": ("[PAD]", "<pad>", "<|endoftext|>"), "eos": ("</s>", "[SEP]", "<|endoftext|>"),
         "eod": ("<|endoftext|>", "<eod>", "</s>", "[SEP]"), "cls": ("[CLS]", "<s>", "<cls>"),
         "sep": ("[SEP]", "</s>", "<sep>"), "mask": ("[MASK]", "<mask>"), "unk": ("[UNK]", "<unk>")}
WORD_STARTS = ("\u2581", "\u0120")  # SentencePiece's and byte-level BPE's marks of a piece after whitespace
UNUSED = re.compile(r"\[unused\d+\]")  # BERT's reserved rows
SENTINEL = re.compile(r"<extra_id_(\d+)>")
TOKENIZER_FILE = "tokenizer.json"


class HFTokenizer:
  """A `tokenizers.Tokenizer` (no truncation, no padding, no special tokens added) with the ids objectives use."""

  def __init__(self, tokenizer: tokenizers.Tokenizer, path: str = "", data: bytes = b""):
    self.tokenizer = tokenizer
    self.path = path
    self.data = data
    tokenizer.no_truncation()
    tokenizer.no_padding()
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    self.pieces = [""] * (max(vocab.values()) + 1)
    for piece, i in vocab.items():
      self.pieces[i] = piece
    self.vocab = vocab
    sentinels = {int(m.group(1)): i for piece, i in vocab.items() if (m := SENTINEL.fullmatch(piece))}
    self.extra_ids = len(sentinels)
    misplaced = [k for k, i in sentinels.items() if i != self.vocab_size - 1 - k]
    if misplaced:
      raise UserError(f"tokenizer {path or '(in memory)'} has <extra_id_{misplaced[0]}> at id "
                      f"{sentinels[misplaced[0]]}, not below the top of its vocabulary as T5's sentinels are")
    self.piece_count = self.vocab_size - self.extra_ids

  @property
  def vocab_size(self) -> int:
    return len(self.pieces)

  def role_id(self, role: str) -> int:
    for name in ROLES[role]:
      if name in self.vocab:
        return self.vocab[name]
    raise UserError(f"tokenizer {self.path or '(in memory)'} has no {' / '.join(ROLES[role])} token, which this "
                    "objective needs; use a tokenizer that has one")

  pad_id = property(lambda self: self.role_id("pad"))
  eos_id = property(lambda self: self.role_id("eos"))
  eod_id = property(lambda self: self.role_id("eod"))
  cls_id = property(lambda self: self.role_id("cls"))
  sep_id = property(lambda self: self.role_id("sep"))
  mask_id = property(lambda self: self.role_id("mask"))

  def sentinel_id(self, index: int) -> int:
    if not 0 <= index < self.extra_ids:
      raise ValueError(f"<extra_id_{index}> does not exist: the tokenizer has {self.extra_ids} extra ids")
    return self.vocab_size - 1 - index

  def special_mask(self) -> np.ndarray:
    """[vocab_size] bool: the special tokens (added ones, [UNK], padding, sentinels), BERT's [unusedN] rows and
    ids no piece holds: never masked nor drawn as random replacements."""
    special = np.array([not piece or bool(UNUSED.fullmatch(piece)) for piece in self.pieces])
    special[np.array([i for i, t in self.tokenizer.get_added_tokens_decoder().items() if t.special], int)] = True
    for role in ("pad", "unk"):
      if any(name in self.vocab for name in ROLES[role]):
        special[self.role_id(role)] = True
    special[self.piece_count:] = True
    return special

  def word_starts(self) -> np.ndarray:
    """[vocab_size] bool: WordPiece: pieces without the continuation prefix (##); other models: pieces that carry
    the whitespace mark (▁ or Ġ)."""
    model = self.tokenizer.model
    if isinstance(model, models.WordPiece):
      prefix = model.continuing_subword_prefix
      return np.array([not piece.startswith(prefix) for piece in self.pieces])
    return np.array([piece.startswith(WORD_STARTS) for piece in self.pieces])

  def encode(self, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

  def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """(ids, each token's character span in `text`, without the whitespace around it: see trim_spans)."""
    encoding = self.tokenizer.encode(text, add_special_tokens=False)
    return encoding.ids, trim_spans(text, encoding.offsets)

  def decode(self, ids: Iterable[int]) -> str:
    return self.tokenizer.decode([int(i) for i in ids if int(i) < self.piece_count], skip_special_tokens=False)

  def sha256(self) -> str:
    return hashlib.sha256(self.data).hexdigest()


def trim_spans(text: str, spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
  """Token spans without the whitespace at their ends (a "\u2581the" or "\u0120the" piece spans "the"); a span of
  whitespace only becomes the empty span at its end. Pieces of one character (byte fallback) may share its span or
  be empty."""
  trimmed = []
  for start, end in spans:
    while start < end and text[start].isspace():
      start += 1
    while end > start and text[end - 1].isspace():
      end -= 1
    trimmed.append((start, end))
  return trimmed


def load(path: str | storage.Path, extra_ids: int = 0, data: bytes | None = None) -> HFTokenizer:
  """A tokenizer.json (its bytes `data` when already read); `extra_ids` (config.data.extra_ids), when not 0, must be
  the number of sentinels it has."""
  path = storage.path(path)
  data = path.read_bytes() if data is None else data
  try:
    parsed = tokenizers.Tokenizer.from_str(data.decode())
  except Exception as error:  # not UTF-8, not JSON, or not a tokenizer's JSON
    raise UserError(f"tokenizer '{path}' is not a Hugging Face tokenizer.json ({str(error).splitlines()[0][:120]})"
                    ) from None
  tokenizer = HFTokenizer(parsed, str(path), data)
  if extra_ids and extra_ids != tokenizer.extra_ids:
    raise UserError(f"tokenizer {path} has {tokenizer.extra_ids} <extra_id_N> sentinels but data.extra_ids="
                    f"{extra_ids}; set --config.data.extra_ids={tokenizer.extra_ids}")
  return tokenizer


def _settings(directory: storage.Path) -> dict:
  path = directory / "tokenizer_config.json"
  try:
    return json.loads(path.read_text()) if path.is_file() else {}
  except (json.JSONDecodeError, UnicodeDecodeError):
    raise UserError(f"{path} is damaged (not JSON); repair it or remove it") from None


def _wordpiece(directory: storage.Path) -> tokenizers.Tokenizer:
  """BertTokenizer's pipeline: BERT's cleaning, CJK characters apart, accents stripped and lower case when
  do_lower_case; splits on whitespace and punctuation; greedy longest-match WordPiece with ##."""
  settings = _settings(directory)
  lower = settings.get("do_lower_case", True)
  lines = (directory / "vocab.txt").read_text(encoding="utf-8").split("\n")  # one token a line, as BertTokenizer reads
  vocab = {token: i for i, token in enumerate(lines[:-1] if lines[-1] == "" else lines)}
  unk = settings.get("unk_token", "[UNK]")
  tokenizer = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
  tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=settings.get("strip_accents"), lowercase=lower)
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tokenizer.decoder = decoders.WordPiece(prefix="##")
  _add_special(tokenizer, vocab, settings)
  return tokenizer


def _byte_level_bpe(directory: storage.Path) -> tokenizers.Tokenizer:
  """RobertaTokenizer's / GPT2Tokenizer's pipeline: GPT-2's byte-level pre-tokenization (no prefix space unless
  tokenizer_config.json asks for one), byte-level BPE merges."""
  settings = _settings(directory)
  vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
  merges = [tuple(line.split()) for line in (directory / "merges.txt").read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#version")]
  tokenizer = tokenizers.Tokenizer(models.BPE(vocab, merges))
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=settings.get("add_prefix_space", False))
  tokenizer.decoder = decoders.ByteLevel()
  _add_special(tokenizer, vocab, settings)
  return tokenizer


def _add_special(tokenizer: tokenizers.Tokenizer, vocab: dict, settings: dict) -> None:
  """The role tokens the vocabulary holds become special tokens: text never splits them apart."""
  names = {name for role in ROLES.values() for name in role}
  names |= {v for k, v in settings.items() if k.endswith("_token") and isinstance(v, str)}
  tokenizer.add_special_tokens(sorted(name for name in names if name in vocab))


def import_files(hf_dir: str | storage.Path, out_dir: str | storage.Path,
                 sentinels: int = 0) -> tuple[storage.Path, int] | None:
  """(the file written into out_dir, its T5 sentinels for data.extra_ids) from hf_dir's tokenizer files; None
  when hf_dir has none. `sentinels`: those of a spiece.model whose tokenizer_config.json names none (T5: 100)."""
  hf_dir, out_dir = storage.path(hf_dir), storage.path(out_dir)
  if (hf_dir / TOKENIZER_FILE).is_file():
    (out_dir / TOKENIZER_FILE).write_bytes((hf_dir / TOKENIZER_FILE).read_bytes())
    return out_dir / TOKENIZER_FILE, load(out_dir / TOKENIZER_FILE).extra_ids
  if (hf_dir / "spiece.model").is_file():
    (out_dir / "spiece.model").write_bytes((hf_dir / "spiece.model").read_bytes())
    settings = _settings(hf_dir)
    named = [t for t in settings.get("additional_special_tokens") or () if SENTINEL.fullmatch(str(t))]
    return out_dir / "spiece.model", int(settings.get("extra_ids", len(named) or sentinels))
  if (hf_dir / "vocab.json").is_file() and (hf_dir / "merges.txt").is_file():
    built = _byte_level_bpe(hf_dir)
  elif (hf_dir / "vocab.txt").is_file():
    built = _wordpiece(hf_dir)
  else:
    return None
  (out_dir / TOKENIZER_FILE).write_text(built.to_str(pretty=True))
  return out_dir / TOKENIZER_FILE, load(out_dir / TOKENIZER_FILE).extra_ids
