"""What every run shares (base_config), and the cut of a recipe to minutes on a laptop CPU (quick_run, tiny)."""

import ml_collections

from bert_jax.parallel import DEFAULT_RULES


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict()
  c.objective = ml_collections.ConfigDict({"name": "masked_lm"})
  c.data = ml_collections.ConfigDict({
      "source": "demo",  # demo | path or glob of text files | jsonl:PATH | tfds:NAME
      # sentences: one per line, a blank line between documents | double_spaced: lines of running text, two or more
      # blank lines between documents (PDF-extracted text) | documents: one per line | files: one per file
      "text_format": "sentences",
      "jsonl_field": "text",
      "tfds_data_dir": "",
      "tfds_split": "train",
      "tokenizer": "",  # SentencePiece .model or Hugging Face tokenizer.json; empty: train one in <workdir>/tokenizer
      "tokenizer_type": "unigram",  # unigram | bpe | character (one piece per character: Chinese, Japanese) | byte_bpe
      "character_coverage": 0.9995,  # SentencePiece: share of characters kept as pieces (1.0 for small alphabets)
      "normalization": "identity",  # identity: the text as written (full-width punctuation kept) | nfkc
      "dummy_prefix": "auto",  # "\u2581" (byte_bpe: a space) before each sentence: auto (off for character) | on | off
      "byte_fallback": False,  # characters without a piece become UTF-8 byte pieces (256 ids) instead of [UNK]
      "tokenizer_sentences": 1_000_000,  # the tokenizer trains on the source's first N sentences
      "extra_ids": 0,  # T5 sentinels <extra_id_N> on the top ids of the vocabulary
      "prepared_dir": "",  # empty: <workdir>/data
      "shards": 32,  # training TFRecord files; each process reads a disjoint part of them
      "seq_len": 128,
      "shuffle_buffer": 10000,
      "eval_tokens": 16_384,  # the source's first N tokens (whole sentences) are held out for evaluation
      "eval_documents": 0,  # > 0: hold out the first N documents instead (the older setting)
      "word_segmenter": "pieces",  # whole-word masking's words: pieces (from the tokenizer) | jieba (Chinese)
      # | jieba_pos (Chinese words, phrases and entities: ERNIE's knowledge masking, objective.masking_unit)
      "entity_lexicon": "",  # jieba_pos: a file of entities, one a line, that jieba keeps whole (data/knowledge.py)
      "stream": False,  # tokenize in each process's tf.data pipeline while training instead of preparing TFRecords
  })
  c.train = ml_collections.ConfigDict({
      "steps": 1000,
      "batch_size": 32,  # global, over all processes and devices
      "microbatches": 1,  # gradient accumulation
      "log_every": 100,
      "clip_norm": 1.0,
  })
  c.optimizer = ml_collections.ConfigDict({
      "name": "adamw",  # adamw | lamb | adafactor
      "learning_rate": 1e-4,
      "schedule": "linear",  # linear | cosine (warm-up, then that decay) | rsqrt | constant
      "min_lr_ratio": 0.0,  # where linear and cosine decay end, over the peak (XLNet's 0.001)
      "warmup_steps": 100,
      "b1": 0.9,
      "b2": 0.999,
      "eps": 1e-6,
      "weight_decay": 0.01,
      "layer_decay": 1.0,  # < 1: ELECTRA's layer-wise learning-rate decay (train/optimizers.py)
  })
  c.checkpoint = ml_collections.ConfigDict({"every": 10_000, "keep": 3, "best_metric": ""})
  c.eval = ml_collections.ConfigDict({"batches": 8, "batch_size": 32, "every": 0})
  c.mesh = ml_collections.ConfigDict({"dcn": 1, "data": -1, "fsdp": 1, "tensor": 1})
  c.rules = DEFAULT_RULES
  return c


def quick_run(c: ml_collections.ConfigDict, learning_rate: float) -> ml_collections.ConfigDict:
  """A recipe cut to minutes on a laptop CPU: 300 steps of 32 sequences of 64 tokens."""
  c.data.seq_len = 64
  c.train.update(steps=300, batch_size=32, log_every=25)
  c.optimizer.update(learning_rate=learning_rate, warmup_steps=30)
  c.checkpoint.every = 100
  c.eval.update(batches=4, batch_size=32)
  return c


def tiny(c: ml_collections.ConfigDict, **model_overrides) -> ml_collections.ConfigDict:
  """A BERT-family recipe (BERT, RoBERTa, ALBERT) with a tiny model (L2 H64 A2, V4096) and a quick run."""
  c.model.update(vocab_size=4096, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
                 max_position=130 if c.model.position_offset else 128)
  c.model.update(model_overrides)
  c.objective.max_predictions = 10
  return quick_run(c, learning_rate=1e-3)
