"""The tokenizer of an export: our SentencePiece model as the files `AutoTokenizer.from_pretrained` loads.

tokenizer.json is built here from the model's proto with `tokenizers` (not transformers' converter, which differs
between releases), so any text encodes to the ids SentencePiece gives: unigram pieces with their scores, BPE merges
ranked by the merged piece's score, a character model as BPE without merges; a run of characters without a piece is
one [UNK] (or their UTF-8 bytes with byte fallback); the normalizer is the model's: its character map (nfkc: NFKC
first, see _character_map), runs of spaces made one, spaces removed at the start of the text and spaces and
"\u2581" at its end, the dummy prefix. Fit for text with special tokens in it, as fill-mask pipelines write it: the
dummy prefix and the removal of leading spaces apply to the text's first part only (Metaspace's prepend_scheme
"first" marks it; marks set by the normalizer tell the pre-tokenizer where a part began with a space), and [MASK]
takes the space before it (lstrip, as ALBERT's and RoBERTa's tokenizers do) while the space after it is kept as the
next word's "\u2581", so "Paris is the [MASK] of France." encodes "of" as the "\u2581of" of running text and
"北京是[MASK]国" gets no stray "\u2581" after the mask. Special ids are those of training: the pieces keep their ids,
T5 sentinels <extra_id_K> sit at vocab_size - 1 - K, and [CLS]/[SEP]/</s> frame sequences as our objectives do (the
framing of the model_type, from its family's descriptor: bert_jax.models.family.Framing).

Where the ids can differ from training's: text holding a special token's name ("[MASK]", "<extra_id_0>", "[SEP]")
is that token, as in every Hugging Face tokenizer (fill-mask needs it), where SentencePiece reads characters; with
normalization nfkc, combining marks out of canonical order (NFKC reorders them, SentencePiece's map does not), the
few characters whose NFKC form composes with the character before ("x\u0344"), and a combining mark after one of the
characters the map changes beyond NFKC ("\u2581\u0301", "\ufffd\u0301": tokenizers' Precompiled drops the mark);
with a unigram model with byte fallback one of whose pieces holds "<0", the text "<0xNN>" (tokenizers' unigram
matches byte pieces in text, SentencePiece does not).

A tokenizer imported with `convert --from-hf` (bert_jax.data.hf_tokenizer: already a fast tokenizer) goes out as it
came in, with the framing and special tokens of the objectives that trained on it.
"""

import json
import re
import tempfile

from sentencepiece import sentencepiece_model_pb2
from tokenizers import Regex, Tokenizer as FastTokenizer, decoders, models, normalizers, pre_tokenizers

from bert_jax import models as models_lib
from bert_jax.data.tokenizer import Tokenizer
from bert_jax.errors import UserError
from bert_jax.files import storage

FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
ROLES = ("unk", "pad", "cls", "sep", "mask", "eos")  # transformers' special tokens: ROLE_token
# Marks the normalizer sets before each part of a text and the pre-tokenizer takes away (noncharacters, which text
# does not hold), and Metaspace's mark of the text's first part.
PART, SPACED, KEPT, FIRST = "\ufdd0", "\ufdd1", "\ufdd2", " "


def special_pieces(tokenizer) -> dict[str, str]:
  """transformers' special-token name -> the piece that plays it in training (our Tokenizer's or an imported
  HFTokenizer's *_id), for the roles `tokenizer` has."""
  found = {}
  for role in ROLES:
    try:
      if role != "unk":
        piece_id = getattr(tokenizer, f"{role}_id")
      else:
        piece_id = tokenizer.processor.unk_id() if hasattr(tokenizer, "processor") else tokenizer.role_id("unk")
    except UserError:  # a role this tokenizer has no piece for
      continue
    found[f"{role}_token"] = _piece(tokenizer, piece_id)
  return found


def _piece(tokenizer, piece_id: int) -> str:
  return tokenizer.processor.id_to_piece(piece_id) if hasattr(tokenizer, "processor") else tokenizer.pieces[piece_id]


def _from_sentencepiece(tokenizer: Tokenizer):
  """The fast tokenizer of a SentencePiece model (see the module docstring)."""
  proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]  # protobuf builds it at import
  proto.ParseFromString(tokenizer.processor.serialized_model_proto())
  spec, trainer = proto.normalizer_spec, proto.trainer_spec
  if trainer.model_type == trainer.WORD or not spec.escape_whitespaces or trainer.treat_whitespace_as_suffix:
    raise UserError(f"tokenizer {tokenizer.path} (a SentencePiece {trainer.ModelType.Name(trainer.model_type).lower()} "
                    "model with its own whitespace rules) has no exact fast Hugging Face equivalent; export with a "
                    "tokenizer trained by `bert-jax tokenizer`")
  user_defined = [p.piece for p in proto.pieces if p.type == p.USER_DEFINED]
  # A unigram model matches its byte pieces in text ("<0x41>"), which SentencePiece never does: the text is cut after
  # such a "<", which changes nothing else where no piece holds "<0".
  split_bytes = trainer.model_type == trainer.UNIGRAM and trainer.byte_fallback and not any(
      "<0" in p.piece for p in proto.pieces if p.type in (p.NORMAL, p.USER_DEFINED))
  fast = FastTokenizer(_model(proto, user_defined))
  fast.normalizer = _normalizer(spec)
  fast.pre_tokenizer = _pre_tokenizer(spec, user_defined, split_bytes)
  fast.decoder = _decoder(spec, trainer.byte_fallback)
  return fast


def _model(proto, user_defined: list[str]):
  """Unigram pieces with their scores, BPE merges ranked by the merged piece's score (as SentencePiece merges), or a
  character model's pieces (BPE without merges: one piece a character). A run of characters without a piece is one
  [UNK], or with byte fallback their UTF-8 bytes, as in SentencePiece."""
  trainer = proto.trainer_spec
  if trainer.model_type == trainer.UNIGRAM:
    return models.Unigram([(p.piece, p.score) for p in proto.pieces], unk_id=trainer.unk_id,
                          byte_fallback=trainer.byte_fallback)
  merges = []
  if trainer.model_type == trainer.BPE:  # only normal pieces merge, the higher scored first
    normal = {p.piece: (-p.score, i) for i, p in enumerate(proto.pieces) if p.type == p.NORMAL}
    merges = [(left, right) for _, left, right in sorted(
        (rank, piece[:k], piece[k:]) for piece, rank in normal.items() for k in range(1, len(piece))
        if piece[:k] in normal and piece[k:] in normal)]
  return models.BPE({p.piece: i for i, p in enumerate(proto.pieces)}, merges, unk_token=trainer.unk_piece,
                    fuse_unk=True, byte_fallback=trainer.byte_fallback, ignore_merges=bool(user_defined))


def _normalizer(spec):
  """SentencePiece's normalization of each part of a text (the text between special tokens): the character map
  (nmt_nfkc), runs of spaces made one, spaces and "\u2581" at the end removed (SentencePiece removes them once spaces
  are "\u2581"), spaces as "\u2581". PART (and the dummy prefix) begins a part and SPACED follows it where the part
  began with a space, for _pre_tokenizer to read; a part of spaces only becomes nothing."""
  start = PART + ("\u2581" if spec.add_dummy_prefix else "")
  steps = _character_map(spec)
  steps.append(normalizers.Prepend(start))  # before the rest, so that it keeps the offset of the part's start
  if spec.remove_extra_whitespaces:
    steps += [normalizers.Replace(Regex("[ \u2581]+\\z"), ""), normalizers.Replace(Regex(" {2,}"), " "),
              normalizers.Replace(Regex(f"(?<=\\A{start}) "), SPACED + " "),
              normalizers.Replace(Regex(f"\\A{PART}\\z"), "")]
  return normalizers.Sequence([*steps, normalizers.Replace(" ", "\u2581")])


def _character_map(spec) -> list:
  """The model's character map. SentencePiece applies it by the longest match at each character; tokenizers'
  Precompiled by each grapheme cluster's shortest match, dropping the rest of the cluster ("\xa0" and a combining
  mark), and char by char in a cluster of 6 bytes or more (no "\xe9" from "e\u0301" before a Devanagari vowel sign).
  For nfkc, NFKC first composes what the map would (decomposed accents, Hangul jamo, half-width kana and their voicing
  marks), so that the map is left with single characters."""
  if not spec.precompiled_charsmap:
    return []
  charsmap = normalizers.Precompiled(spec.precompiled_charsmap)
  if spec.name not in ("nmt_nfkc", "nfkc"):
    return [charsmap]
  # nmt_nfkc keeps the full-width tilde that NFKC makes "~"
  return [normalizers.Replace("\uff5e", KEPT), normalizers.NFKC(), normalizers.Replace(KEPT, "\uff5e"), charsmap]


def _pre_tokenizer(spec, user_defined: list[str], split_bytes: bool):
  """Takes away _normalizer's marks and, from the text's first part only (Metaspace's prepend_scheme "first" marks it
  with FIRST), the space it began with; the dummy prefix stays on the first part. User-defined pieces stand alone, as
  SentencePiece emits them whole; with `split_bytes` a "<" that begins a byte piece's name ends a word."""
  dummy = "\u2581" if spec.add_dummy_prefix else ""
  marks = [FIRST + PART + dummy + SPACED + ("" if dummy else "\u2581"), FIRST + PART, PART + dummy + SPACED,
           PART + dummy] if spec.remove_extra_whitespaces else [FIRST + PART, PART + dummy]
  steps = [pre_tokenizers.Metaspace(replacement=FIRST, prepend_scheme="first", split=False),
           pre_tokenizers.Split(Regex("\\A(?:" + "|".join(marks) + ")"), behavior="removed")]
  if split_bytes:
    steps.append(pre_tokenizers.Split(Regex("<(?=0x[0-9A-F]{2}>)"), behavior="merged_with_previous"))
  if user_defined:
    pattern = "|".join(re.escape(piece) for piece in sorted(user_defined, key=len, reverse=True))
    steps.append(pre_tokenizers.Split(Regex(pattern), behavior="isolated"))
  return pre_tokenizers.Sequence(steps)


def _decoder(spec, byte_fallback: bool):
  steps: list[decoders.Decoder] = [decoders.Replace("\u2581", " ")]
  steps += [decoders.ByteFallback()] if byte_fallback else []
  if spec.add_dummy_prefix:
    steps += [decoders.Fuse(), decoders.Strip(content=" ", left=1)]
  elif byte_fallback:
    steps.append(decoders.Fuse())
  return decoders.Sequence(steps)


def fast_tokenizer(tokenizer, model_type: str, model_max_length: int | None = None):
  """A transformers PreTrainedTokenizerFast that encodes as `tokenizer` (ours, or an imported HFTokenizer) does,
  framed for `model_type`."""
  try:
    from tokenizers import AddedToken, processors
    import transformers
  except ImportError:
    raise UserError("exporting the tokenizer needs transformers: pip install 'transformers>=5'") from None
  sentinels = [f"<extra_id_{k}>" for k in reversed(range(tokenizer.extra_ids))]  # ids piece_count, ...
  if hasattr(tokenizer, "processor"):
    fast = _from_sentencepiece(tokenizer)
    fast.add_special_tokens(sentinels)
  else:  # imported: the very tokenizer training used (its sentinels included)
    fast = type(tokenizer.tokenizer).from_str(tokenizer.tokenizer.to_str())
  pieces = special_pieces(tokenizer)
  roles = {name.removesuffix("_token"): piece for name, piece in pieces.items()}
  framing = models_lib.framing(model_type)  # the family's: as its objectives and fine-tuning frame a text and a pair
  if "{eod}" in framing.single + framing.pair:  # GPT-2's end-of-text, which no transformers role names
    roles["eod"] = _piece(tokenizer, tokenizer.eod_id)
  try:
    single, pair = (template.format(**roles) for template in (framing.single, framing.pair))
  except KeyError as missing:
    raise UserError(f"tokenizer {tokenizer.path} has no {missing.args[0]} piece, which a {model_type} model's input "
                    "needs; export with a tokenizer trained by `bert-jax tokenizer`") from None
  specials = {part.split(":")[0] for part in f"{single} {pair}".split() if not part.startswith("$")}
  fast.post_processor = processors.TemplateProcessing(
      single=single, pair=pair, special_tokens=[(piece, fast.token_to_id(piece)) for piece in sorted(specials)])
  tokens: dict[str, str | AddedToken] = dict(pieces)
  if "mask_token" in pieces:
    tokens["mask_token"] = AddedToken(pieces["mask_token"], lstrip=True, rstrip=False, normalized=False, special=True)
  inputs = ["input_ids", "token_type_ids", "attention_mask"] if framing.token_types else ["input_ids", "attention_mask"]
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=fast, additional_special_tokens=sentinels, padding_side=framing.padding_side,
      model_input_names=inputs, **tokens,
      **({"model_max_length": model_max_length} if model_max_length else {}))


def write(fast, tokenizer: Tokenizer, directory: str | storage.Path) -> None:
  """Writes FILES of `fast` (fast_tokenizer of `tokenizer`) into `directory`: what AutoTokenizer loads."""
  directory = storage.path(directory)
  for name in FILES:
    if (directory / name).exists():
      raise UserError(f"{directory / name} already exists; choose a new --output directory")
  with tempfile.TemporaryDirectory() as local:  # transformers writes local files only: copied into `directory`
    fast.save_pretrained(local)
    for saved in storage.files_below(local):
      (directory / saved.name).write_bytes(saved.read_bytes())
  config_path = directory / "tokenizer_config.json"
  config = json.loads(config_path.read_text())
  config["tokenizer_class"] = "PreTrainedTokenizerFast"  # the class name both transformers 4 and 5 know
  config_path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
  special: dict[str, str | list[str]] = dict(special_pieces(tokenizer))
  if tokenizer.extra_ids:
    special["additional_special_tokens"] = [f"<extra_id_{k}>" for k in range(tokenizer.extra_ids)]
  (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False) + "\n")
