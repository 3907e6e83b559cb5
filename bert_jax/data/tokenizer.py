"""SentencePiece tokenizers: trained on any source or loaded from a .model, with the ids objectives need.

Special pieces of a tokenizer trained here (P = model.pad_token_id): [PAD] at id P, then </s>, [UNK], [CLS],
[SEP], [MASK] on the lowest free ids, in that order. With P = 0: [PAD]=0 </s>=1 [UNK]=2 [CLS]=3 [SEP]=4
[MASK]=5; with P = 1 (RoBERTa): </s>=0 [PAD]=1 [UNK]=2 [CLS]=3 [SEP]=4 [MASK]=5. [CLS], [SEP] and [MASK]
are control pieces: text never encodes to them (a literal "[MASK]" in a corpus stays ordinary text).

T5 sentinels: with extra_ids=N the SentencePiece model holds vocab_size - N pieces and <extra_id_K> is id
vocab_size - 1 - K, above every piece (<extra_id_0> the highest), as T5's vocabularies do. They live in
this wrapper, so the same N must be given when the .model is loaded (config.data.extra_ids).

Byte-level BPE (data.tokenizer_type=byte_bpe, GPT-2's and BART's): trained with Hugging Face `tokenizers` into a
tokenizer.json (`train_byte_bpe`) that bert_jax.data.hf_tokenizer loads; its special tokens are BYTE_BPE_SPECIALS.

Options (config.data, `bert-jax tokenizer`): model type unigram | bpe | character (one piece per character, as
BERT's Chinese models split CJK text; its vocabulary is the corpus' characters, so model.vocab_size is a limit that
must then be set to the count it reports); normalization identity (the text as written: full-width punctuation
stays) | nfkc (SentencePiece's nmt_nfkc); dummy prefix (SentencePiece's add_dummy_prefix: a "\u2581" before each
sentence; auto: on for unigram/bpe, off for character, so text without spaces does not start every line with a
lone "\u2581"); byte fallback (characters without a piece become UTF-8 byte pieces, not [UNK]); character coverage.

A loaded .model (ALBERT's, T5's, one trained elsewhere) works the same, provided it has the pieces the
objective asks for; model.vocab_size must be its number of ids (with T5 sentinels, also that rounded up to a
multiple of VOCAB_ROUNDING) and its pad id must equal model.pad_token_id.
"""

from collections.abc import Iterable
import hashlib
import io
import os
import re
import sys
from typing import Any
import unicodedata

import numpy as np
import sentencepiece as spm
import tokenizers

from bert_jax.data import hf_tokenizer
from bert_jax.errors import UserError
from bert_jax.files import atomic, storage

SPECIAL_PIECES = ("</s>", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
WORD_BOUNDARY = "\u2581"  # SentencePiece's marker for a piece that begins after whitespace
MODEL_TYPES = ("unigram", "bpe", "character", "byte_bpe")
NORMALIZATIONS = {"identity": "identity", "nfkc": "nmt_nfkc"}  # ours -> SentencePiece's normalization_rule_name
DUMMY_PREFIX = ("auto", "on", "off")
# byte_bpe: the special tokens, <pad> at the pad id and the others on the lowest free ids in this order (with pad id 1,
# RoBERTa's and BART's <s> <pad> </s> <unk> first), then the 256 bytes, then the merges.
BYTE_BPE_SPECIALS = ("<s>", "</s>", "<unk>", "<mask>", "<|endoftext|>")
VOCAB_ROUNDING = 128  # with T5 sentinels, a model's rows may be the ids rounded up to a multiple of this (T5's 32128)


class Tokenizer:
  """A SentencePiece processor plus optional T5 sentinels on top of its ids."""

  def __init__(self, processor: spm.SentencePieceProcessor, extra_ids: int = 0, path: str = ""):
    self.processor = processor
    self.extra_ids = extra_ids
    self.path = path
    self.piece_count = processor.get_piece_size()

  @property
  def vocab_size(self) -> int:
    return self.piece_count + self.extra_ids

  def piece_id(self, *names: str) -> int:
    """The id of the first of `names` the model has (a piece it lacks maps to [UNK])."""
    for name in names:
      piece_id = self.processor.piece_to_id(name)
      if not self.processor.is_unknown(piece_id) or name in ("[UNK]", "<unk>"):
        return piece_id
    raise UserError(f"tokenizer {self.path or '(in memory)'} has no {names[0]} piece, which this objective needs; "
                    "train one with `bert-jax tokenizer` (it adds [CLS] [SEP] [MASK] [PAD])")

  @property
  def pad_id(self) -> int:
    return self.processor.pad_id() if self.processor.pad_id() >= 0 else self.piece_id("[PAD]", "<pad>")

  @property
  def eos_id(self) -> int:
    return self.processor.eos_id() if self.processor.eos_id() >= 0 else self.piece_id("</s>", "[SEP]")

  @property
  def eod_id(self) -> int:
    """What ends a document in XLNet's token stream: the model's <eod> (XLNet's own vocabulary), else </s>."""
    return self.piece_id("<eod>", "</s>", "[SEP]")

  @property
  def cls_id(self) -> int:
    return self.piece_id("[CLS]", "<cls>")

  @property
  def sep_id(self) -> int:
    return self.piece_id("[SEP]", "<sep>")

  @property
  def mask_id(self) -> int:
    return self.piece_id("[MASK]", "<mask>")

  def sentinel_id(self, index: int) -> int:
    if not 0 <= index < self.extra_ids:
      raise ValueError(f"<extra_id_{index}> does not exist: the tokenizer has {self.extra_ids} extra ids")
    return self.vocab_size - 1 - index

  def special_mask(self) -> np.ndarray:
    """[vocab_size] bool: ids that are never masked nor drawn as random replacements (control pieces,
    [UNK], padding, unused pieces and sentinels)."""
    p = self.processor
    special = np.ones(self.vocab_size, bool)
    special[:self.piece_count] = [p.is_control(i) or p.is_unknown(i) or p.is_unused(i)
                                  for i in range(self.piece_count)]
    special[self.pad_id] = True
    return special

  def word_starts(self) -> np.ndarray:
    """[vocab_size] bool: pieces that begin a word (after whitespace, or a CJK character, which is a word of
    its own as in BERT's Chinese models); the others continue the word before them."""
    starts = np.ones(self.vocab_size, bool)
    for i in range(self.piece_count):
      piece = self.processor.id_to_piece(i)
      starts[i] = piece.startswith(WORD_BOUNDARY) or (bool(piece) and is_cjk(piece[0]))
    return starts

  def encode(self, texts: list[str]) -> list[list[int]]:
    return self.processor.encode(texts, num_threads=os.cpu_count() or 1)

  def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """(ids, each token's character span in `text`, without the whitespace around it: hf_tokenizer.trim_spans)."""
    try:
      encoded = self.processor.encode(text, return_type="offset_mapping")
    except (TypeError, ValueError):
      raise UserError("token offsets need sentencepiece>=0.2.1; pip install 'sentencepiece>=0.2.1'") from None
    return list(encoded["ids"]), hf_tokenizer.trim_spans(text, encoded["offsets"])

  def decode(self, ids: Iterable[int]) -> str:
    return self.processor.decode([int(i) for i in ids if int(i) < self.piece_count])

  def sha256(self) -> str:
    return hashlib.sha256(self.processor.serialized_model_proto()).hexdigest()


def is_cjk(char: str) -> bool:
  return unicodedata.name(char, "").startswith(("CJK ", "HIRAGANA", "KATAKANA", "HANGUL"))


def special_layout(pad_id: int) -> dict[str, int]:
  """Piece -> id of the special pieces, [PAD] at pad_id and the rest on the lowest free ids."""
  free = (i for i in range(len(SPECIAL_PIECES) + 1) if i != pad_id)
  layout = {piece: next(free) for piece in SPECIAL_PIECES}
  layout["[PAD]"] = pad_id
  return layout


def train(sentences: Iterable[str], output: str | storage.Path, vocab_size: int, model_type: str = "unigram",
          character_coverage: float = 0.9995, pad_id: int = 0, extra_ids: int = 0,
          max_sentences: int = 1_000_000, **options) -> Tokenizer:
  """Trains on the first `max_sentences` non-empty sentences; writes `output` only when training succeeded.
  `options`: normalization, dummy_prefix, byte_fallback (see train_serialized)."""
  model = train_serialized(sentences, vocab_size, model_type, character_coverage, pad_id, extra_ids, max_sentences,
                           **options)
  return _write(output, model, extra_ids)


def _check_options(model_type: str, normalization: str, dummy_prefix: str) -> None:
  for key, value, allowed in (("tokenizer_type", model_type, MODEL_TYPES),
                              ("normalization", normalization, tuple(NORMALIZATIONS)),
                              ("dummy_prefix", dummy_prefix, DUMMY_PREFIX)):
    if value not in allowed:
      raise UserError(f"data.{key} must be one of {', '.join(allowed)}, got '{value}'")


def train_serialized(sentences: Iterable[str], vocab_size: int, model_type: str = "unigram",
                     character_coverage: float = 0.9995, pad_id: int = 0, extra_ids: int = 0,
                     max_sentences: int = 1_000_000, normalization: str = "identity", dummy_prefix: str = "auto",
                     byte_fallback: bool = False) -> bytes:
  """The serialized SentencePiece model `train` writes. A character model holds at most vocab_size ids: the
  corpus' characters (within character_coverage), byte pieces with byte_fallback, and the special pieces."""
  _check_options(model_type, normalization, dummy_prefix)
  if model_type == "byte_bpe":
    return train_byte_bpe(sentences, vocab_size, pad_id, extra_ids, max_sentences, normalization, dummy_prefix)
  piece_count = vocab_size - extra_ids
  if piece_count <= len(SPECIAL_PIECES) + 1:
    raise UserError(f"vocab size {vocab_size} leaves no room for ordinary pieces after {extra_ids} extra ids")
  if not 0 <= pad_id < piece_count:
    raise UserError(f"model.pad_token_id={pad_id} is outside the tokenizer's {piece_count} pieces")
  lines = _training_lines(sentences, max_sentences)
  layout = special_layout(pad_id)
  model = io.BytesIO()
  character = model_type == "character"
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=piece_count,
        model_type="char" if character else model_type, hard_vocab_limit=not character,
        normalization_rule_name=NORMALIZATIONS[normalization], byte_fallback=byte_fallback,
        add_dummy_prefix=dummy_prefix == "on" or (dummy_prefix == "auto" and not character),
        character_coverage=character_coverage, pad_id=layout["[PAD]"], eos_id=layout["</s>"],
        unk_id=layout["[UNK]"], bos_id=-1, pad_piece="[PAD]", eos_piece="</s>", unk_piece="[UNK]",
        control_symbols=["[CLS]", "[SEP]", "[MASK]"], max_sentence_length=1 << 16,
        train_extremely_large_corpus=len(lines) > 10_000_000, minloglevel=2)
  except RuntimeError as e:
    limit = re.search(r"value <= (\d+)", str(e))
    if limit:
      most = int(limit.group(1)) + extra_ids
      raise UserError(f"vocab size {vocab_size} is too large for this corpus (at most {most}); add text or set "
                      f"--config.model.vocab_size={most} (bert-jax tokenizer: --vocab-size {most})") from None
    chars = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(e))
    if chars:
      raise UserError(f"vocab size {vocab_size} cannot hold the corpus' {chars.group(1)} characters plus the special "
                      "pieces; raise the vocab size or lower data.character_coverage") from None
    raise UserError(f"SentencePiece could not train a tokenizer: {str(e).splitlines()[0]}") from None
  return model.getvalue()


def _training_lines(sentences: Iterable[str], max_sentences: int) -> list[str]:
  """The first `max_sentences` non-empty sentences."""
  lines = []
  for sentence in sentences:
    if sentence.strip():
      lines.append(sentence)
      if len(lines) >= max_sentences:
        break
  if not lines:
    raise UserError("the corpus is empty: no text to train a tokenizer on")
  return lines


def train_byte_bpe(sentences: Iterable[str], vocab_size: int, pad_id: int = 0, extra_ids: int = 0,
                   max_sentences: int = 1_000_000, normalization: str = "identity",
                   dummy_prefix: str = "auto") -> bytes:
  """A byte-level BPE as GPT-2's (Radford et al. 2019, section 2.2), trained with Hugging Face `tokenizers`: text as
  UTF-8 bytes, each shown as one character, split by GPT-2's pattern, merges
  learned up to vocab_size ids over the 256 bytes and BYTE_BPE_SPECIALS; every text encodes, none to an unknown id.
  Returns the tokenizer.json, which bert_jax.data.hf_tokenizer loads. Sentences are encoded one by one and
  joined, so dummy_prefix auto (or on) gives each a prefix space (HF's add_prefix_space): the sentences of a document
  then decode with a space between them, as SentencePiece's dummy prefix does; off is GPT-2's own setting."""
  if extra_ids:
    raise UserError("data.extra_ids (T5 sentinels) go with SentencePiece tokenizers; set data.extra_ids=0 for byte_bpe")
  specials = list(BYTE_BPE_SPECIALS)
  if not 0 <= pad_id <= len(specials):
    raise UserError(f"model.pad_token_id={pad_id} must be one of the byte_bpe special ids 0 to {len(specials)}")
  specials.insert(pad_id, "<pad>")
  alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
  if vocab_size <= len(specials) + len(alphabet):
    raise UserError(f"vocab size {vocab_size} leaves no room for merges after {len(specials)} special tokens and "
                    f"{len(alphabet)} bytes; use more than {len(specials) + len(alphabet)}")
  lines = _training_lines(sentences, max_sentences)
  tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE())
  if normalization == "nfkc":
    tokenizer.normalizer = tokenizers.normalizers.NFKC()
  tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=dummy_prefix != "off")
  tokenizer.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet,
                                show_progress=False)
  tokenizer.train_from_iterator(lines, trainer)
  return tokenizer.to_str(pretty=True).encode()


def _is_json(model: bytes) -> bool:
  """A tokenizer.json (byte_bpe) rather than a SentencePiece model proto (which begins with a field tag, never '{')."""
  return model[:1] == b"{"


def _id_count(model: bytes) -> int:
  if _is_json(model):
    return tokenizers.Tokenizer.from_str(model.decode()).get_vocab_size(with_added_tokens=True)
  return spm.SentencePieceProcessor(model_proto=model).get_piece_size()


def _write(output: str | storage.Path, model: bytes, extra_ids: int) -> Tokenizer:
  output = storage.path(output)
  output.parent.mkdir(parents=True, exist_ok=True)
  atomic.write_bytes(output, model)
  return load(output, extra_ids)


def options(data_config: Any) -> dict:
  """The training options of config.data beyond type, size and coverage (train_serialized's keywords)."""
  return {"normalization": data_config.normalization, "dummy_prefix": data_config.dummy_prefix,
          "byte_fallback": data_config.byte_fallback}


def train_serialized_for_config(config: Any, source, exact: bool = True) -> bytes:
  """A model for config.model (vocab size, pad id) trained on a sources.Source with config.data's settings. With
  `exact`, a character model with fewer ids than model.vocab_size is an error that names its size."""
  d = config.data
  model = train_serialized(source.sentences(), config.model.vocab_size, d.tokenizer_type, d.character_coverage,
                           config.model.get("pad_token_id", 0), d.extra_ids, d.tokenizer_sentences, **options(d))
  report = source.skipped_report()
  if report:
    print(report, file=sys.stderr)
  ids = _id_count(model) + d.extra_ids
  if exact and ids != config.model.vocab_size:
    what = "its merges stop early on a small corpus" if _is_json(model) else "its characters and special pieces"
    raise UserError(f"the {d.tokenizer_type} tokenizer of {source.spec} has {ids} ids ({what}), "
                    f"not model.vocab_size={config.model.vocab_size}; set --config.model.vocab_size={ids}")
  return model


def train_for_config(config: Any, source, output: str | storage.Path, exact: bool = True) -> Tokenizer:
  """train_serialized_for_config, written to `output`."""
  return _write(output, train_serialized_for_config(config, source, exact), config.data.extra_ids)


def load(path: str | storage.Path, extra_ids: int = 0) -> Tokenizer:
  """A SentencePiece .model, or a Hugging Face tokenizer.json (any .json: bert_jax.data.hf_tokenizer)."""
  path = storage.path(path)
  if not path.is_file():
    raise UserError(f"tokenizer '{path}' does not exist; give a SentencePiece .model file or a Hugging Face "
                    "tokenizer.json, or leave data.tokenizer empty to train one")
  data = path.read_bytes()  # once: a bucket's file is a fetch
  if path.suffix == ".json" or _is_json(data):  # byte_bpe trained into <workdir>/tokenizer
    # HFTokenizer has Tokenizer's interface without subclassing it; callers take either as a Tokenizer.
    return hf_tokenizer.load(path, extra_ids, data)  # type: ignore[return-value]
  processor = spm.SentencePieceProcessor()
  try:
    processor.load(model_proto=data)
  except (OSError, RuntimeError):
    raise UserError(f"tokenizer '{path}' is not a SentencePiece model") from None
  return Tokenizer(processor, extra_ids, str(path))


def padded_rows(ids: int) -> int:
  """The embedding rows a T5-style vocabulary of `ids` ids (sentinels included) is padded to: 32,100 -> 32,128."""
  return -(-ids // VOCAB_ROUNDING) * VOCAB_ROUNDING


def check_model_fit(tokenizer: Tokenizer, model_config: Any) -> None:
  """The model has one embedding per id; the one padding allowed is T5's: a tokenizer with sentinels in rows
  rounded up to a multiple of VOCAB_ROUNDING (32,000 pieces and 100 sentinels in 32,128 rows). It pads where the
  tokenizer pads."""
  ids, rows = tokenizer.vocab_size, model_config.vocab_size
  if rows != ids and not (tokenizer.extra_ids and rows == padded_rows(ids)):
    unused = f", and {rows - ids} embeddings no id would use" if rows > ids else ""
    sentinels = "" if tokenizer.extra_ids or rows < ids else " (or give its T5 sentinels: --config.data.extra_ids=N)"
    raise UserError(f"tokenizer {tokenizer.path} has {ids} ids but model.vocab_size={rows}{unused}; set "
                    f"--config.model.vocab_size={ids}{sentinels}, or use a tokenizer of {rows} ids")
  model_pad = model_config.get("pad_token_id", 0)
  if tokenizer.pad_id != model_pad:
    raise UserError(f"tokenizer {tokenizer.path} pads with id {tokenizer.pad_id} but model.pad_token_id={model_pad}; "
                    f"set --config.model.pad_token_id={tokenizer.pad_id} or use a tokenizer trained for this model")
