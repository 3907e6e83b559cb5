"""The tokenizer of an export: our SentencePiece model as the files `AutoTokenizer.from_pretrained` loads.

tokenizer.json is the fast tokenizer transformers' own SentencePiece converter builds from the model's proto
(`SpmConverter.build_tokenizer_from_spm_proto`: unigram, BPE or character pieces, the model's normalizer, dummy
prefix and byte fallback), so text encodes to the ids SentencePiece gives. Two changes make it fit for text with
special tokens in it, as fill-mask pipelines write it: the dummy prefix goes before the text's first part only
(transformers' legacy=False), and [MASK] takes the space before it (lstrip, as ALBERT's and RoBERTa's tokenizers
do) while the space after it is kept as the next word's "\u2581" (the converter strips it at the start of every
part), so "Paris is the [MASK] of France." encodes "of" as the "\u2581of" of running text and "北京是[MASK]国"
gets no stray "\u2581" after the mask. Special ids are those of training: the pieces keep their ids, T5 sentinels
<extra_id_K> sit at vocab_size - 1 - K, and [CLS]/[SEP]/</s> frame sequences as our objectives do.

A tokenizer imported with `convert --from-hf` (bert_jax.data.hf_tokenizer: already a fast tokenizer) goes out as it
came in, with the framing and special tokens of the objectives that trained on it.
"""

import json
import tempfile

from bert_jax import storage
from bert_jax.data.tokenizer import Tokenizer
from bert_jax.errors import UserError

FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Hugging Face model_type -> (single, pair) templates: one text as the pretraining objectives frame it, a pair as
# fine-tuning does (objectives/classification.py's framings; tests/test_tokenizer_export.py holds them equal).
TEMPLATES = {
    "bert": ("{cls} $A {sep}", "{cls} $A {sep} $B:1 {sep}:1"),
    "electra": ("{cls} $A {sep}", "{cls} $A {sep} $B:1 {sep}:1"),
    "albert": ("{cls} $A {sep}", "{cls} $A {sep} $B:1 {sep}:1"),
    "roberta": ("{cls} $A {sep}", "{cls} $A {sep} {sep} $B {sep}"),  # one token type
    "xlnet": ("$A {sep} {cls}:2", "$A {sep} $B:1 {sep}:1 {cls}:2"),  # XLNet's <cls> at the end, its own type
    "t5": ("$A {eos}", "$A {eos} $B {eos}"),
    "gpt2": ("$A", "$A {eod} $B"),  # GPT-2 frames nothing: the end-of-text that ends documents joins a pair
    "bart": ("{cls} $A {eos}", "{cls} $A {eos} $B {eos}"),  # <s> A </s> (text_infilling's blocks), one type
}
ROLES = ("unk", "pad", "cls", "sep", "mask", "eos")  # transformers' special tokens: ROLE_token


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


def _from_sentencepiece(tokenizer: Tokenizer, transformers):
  """The fast tokenizer of a SentencePiece model (see the module docstring)."""
  from sentencepiece import sentencepiece_model_pb2
  from tokenizers import Regex, normalizers
  from transformers.convert_slow_tokenizer import SpmConverter

  if not hasattr(SpmConverter, "build_tokenizer_from_spm_proto"):
    raise UserError(f"exporting the tokenizer needs transformers>=5 (found {transformers.__version__}); "
                    "pip install 'transformers>=5'")

  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(tokenizer.processor.serialized_model_proto())
  if proto.trainer_spec.model_type == sentencepiece_model_pb2.TrainerSpec.BPE:
    vocab = {piece.piece: i for i, piece in enumerate(proto.pieces)}
  else:  # unigram, and character models: single-character pieces with log-frequency scores
    vocab = [(piece.piece, piece.score) for piece in proto.pieces]
  fast = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab, legacy=False)
  if fast is None:
    raise UserError(f"tokenizer {tokenizer.path} is a {proto.trainer_spec.model_type} SentencePiece model, "
                    "which has no fast Hugging Face equivalent")
  spec = proto.normalizer_spec
  steps = [normalizers.Precompiled(spec.precompiled_charsmap)] if spec.precompiled_charsmap else []
  if spec.remove_extra_whitespaces:  # trailing spaces go; a leading one stays (see the module docstring)
    steps += [normalizers.Replace(Regex(" +\\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
  if spec.escape_whitespaces:
    steps.append(normalizers.Replace(" ", "\u2581"))
  fast.normalizer = normalizers.Sequence(steps)
  return fast


def fast_tokenizer(tokenizer, model_type: str, model_max_length: int | None = None):
  """A transformers PreTrainedTokenizerFast that encodes as `tokenizer` (ours, or an imported HFTokenizer) does,
  framed for `model_type`."""
  try:
    import transformers
    from tokenizers import AddedToken, processors
  except ImportError:
    raise UserError("exporting the tokenizer needs transformers: pip install 'transformers>=5'") from None
  sentinels = [f"<extra_id_{k}>" for k in reversed(range(tokenizer.extra_ids))]  # ids piece_count, ...
  if hasattr(tokenizer, "processor"):
    fast = _from_sentencepiece(tokenizer, transformers)
    fast.add_special_tokens(sentinels)
  else:  # imported: the very tokenizer training used (its sentinels included)
    fast = type(tokenizer.tokenizer).from_str(tokenizer.tokenizer.to_str())
  pieces = special_pieces(tokenizer)
  roles = {name.removesuffix("_token"): piece for name, piece in pieces.items()}
  if model_type == "gpt2":
    roles["eod"] = _piece(tokenizer, tokenizer.eod_id)
  try:
    single, pair = (template.format(**roles) for template in TEMPLATES[model_type])
  except KeyError as missing:
    raise UserError(f"tokenizer {tokenizer.path} has no {missing.args[0]} piece, which a {model_type} model's input "
                    "needs; export with a tokenizer trained by `bert-jax tokenizer`") from None
  framing = {part.split(":")[0] for part in f"{single} {pair}".split() if not part.startswith("$")}
  fast.post_processor = processors.TemplateProcessing(
      single=single, pair=pair, special_tokens=[(piece, fast.token_to_id(piece)) for piece in sorted(framing)])
  if "mask_token" in pieces:
    pieces["mask_token"] = AddedToken(pieces["mask_token"], lstrip=True, rstrip=False, normalized=False, special=True)
  inputs = ["input_ids", "attention_mask"] if model_type in ("roberta", "t5", "gpt2", "bart") else \
      ["input_ids", "token_type_ids", "attention_mask"]
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=fast, additional_special_tokens=sentinels, padding_side="left" if model_type == "xlnet" else
      "right", model_input_names=inputs, **pieces,
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
  special = special_pieces(tokenizer)
  if tokenizer.extra_ids:
    special["additional_special_tokens"] = [f"<extra_id_{k}>" for k in range(tokenizer.extra_ids)]
  (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False) + "\n")
