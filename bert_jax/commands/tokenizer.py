"""`bert-jax tokenizer`: train a SentencePiece tokenizer on a source (the config's, or --source)."""

import argparse

from bert_jax import cli, config as config_lib
from bert_jax.data import tokenizer as tokenizer_lib
from bert_jax.data.sources import Source, absolute_spec
from bert_jax.errors import UserError
from bert_jax.files import storage

HELP = ("train a SentencePiece tokenizer (unigram, BPE or character) with [PAD] [CLS] [SEP] [MASK] and optional T5 "
        "sentinels")


def add_arguments(parser: argparse.ArgumentParser) -> None:
  cli.add_config_argument(parser)
  parser.add_argument("--output", required=True, help="the .model file to write (byte_bpe: a .json)")
  parser.add_argument("--source", help="text to train on (default: data.source): demo, a file, directory or glob, "
                                       "jsonl:PATH or tfds:NAME")
  parser.add_argument("--vocab-size", type=int, help="ids in all, sentinels included (default: model.vocab_size)")
  parser.add_argument("--model-type", choices=tokenizer_lib.MODEL_TYPES,
                      help="character: one piece per character, as BERT's Chinese models (its vocabulary size is the "
                           "corpus' characters; --vocab-size caps it); byte_bpe: GPT-2's byte-level BPE (Hugging Face "
                           "tokenizers). Default: data.tokenizer_type")
  parser.add_argument("--character-coverage", type=float, help="default: data.character_coverage")
  parser.add_argument("--normalization", choices=tuple(tokenizer_lib.NORMALIZATIONS),
                      help="identity: the text as written (full-width punctuation kept); nfkc: SentencePiece's "
                           "nmt_nfkc (default: data.normalization)")
  parser.add_argument("--dummy-prefix", choices=tokenizer_lib.DUMMY_PREFIX,
                      help="a \u2581 before each sentence; auto: on, off for character (default: data.dummy_prefix)")
  parser.add_argument("--byte-fallback", action=argparse.BooleanOptionalAction,
                      help="characters without a piece become UTF-8 byte pieces, not [UNK] "
                           "(default: data.byte_fallback)")
  parser.add_argument("--extra-ids", type=int,
                      help="T5 sentinels <extra_id_N> on the top ids (default: data.extra_ids)")
  parser.add_argument("--max-sentences", type=int,
                      help="train on the first N sentences (default: data.tokenizer_sentences)")
  parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")


def run(args) -> int:
  source = absolute_spec(args.source) if args.source else None
  settings = {"data.source": source, "model.vocab_size": args.vocab_size, "data.tokenizer_type": args.model_type,
              "data.character_coverage": args.character_coverage, "data.extra_ids": args.extra_ids,
              "data.tokenizer_sentences": args.max_sentences, "data.normalization": args.normalization,
              "data.dummy_prefix": args.dummy_prefix, "data.byte_fallback": args.byte_fallback}
  overrides = [f"{key}={value}" for key, value in settings.items() if value is not None]
  config = config_lib.load_config(args.config, [*args.overrides, *overrides])
  output = storage.path(args.output)
  suffix = ".json" if config.data.tokenizer_type == "byte_bpe" else ".model"  # byte_bpe: a tokenizer.json
  if output.suffix != suffix:
    raise UserError(f"--output {output} should end in {suffix} for a {config.data.tokenizer_type} tokenizer")
  if output.exists() and not args.force:
    raise UserError(f"{output} exists; pass --force to overwrite it")
  tokenizer = tokenizer_lib.train_for_config(config, Source(config.data), output, exact=False)
  sentinels = f" and {tokenizer.extra_ids} sentinels" if tokenizer.extra_ids else ""
  print(f"wrote {output}: {tokenizer.piece_count} pieces{sentinels}; [PAD]={tokenizer.pad_id} </s>={tokenizer.eos_id} "
        f"[CLS]={tokenizer.cls_id} [SEP]={tokenizer.sep_id} [MASK]={tokenizer.mask_id}")
  size = f" --config.model.vocab_size={tokenizer.vocab_size}" if tokenizer.vocab_size != config.model.vocab_size else ""
  print(f"use it with --config.data.tokenizer={output}{size}")
  return 0
