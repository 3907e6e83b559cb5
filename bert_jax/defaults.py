"""The defaults every config starts from; a config file lists only what differs (see configs/)."""

import ml_collections

# Logical axis -> mesh axes. Batch over data and fsdp; parameters FSDP-sharded on `embed`,
# tensor-parallel on heads/mlp/vocab. A config may replace any rule.
DEFAULT_RULES = (
    ("batch", ("dcn", "data", "fsdp")),
    ("length", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv", None),
    ("mlp", "tensor"),
    ("layers", None),
    ("relpos", None),
)


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict()
  c.objective = ml_collections.ConfigDict({"name": "masked_lm"})
  c.data = ml_collections.ConfigDict({
      "source": "demo",  # demo | path or glob of text files | jsonl:PATH | tfds:NAME
      "text_format": "sentences",  # sentences: one per line, blank line between documents | documents: one per line
      "jsonl_field": "text",
      "tfds_data_dir": "",
      "tfds_split": "train",
      "tokenizer": "",  # a SentencePiece .model; empty: train one on the source into <workdir>/tokenizer
      "tokenizer_type": "unigram",
      "prepared_dir": "",  # empty: <workdir>/data
      "seq_len": 128,
      "shuffle_buffer": 10000,
      "eval_documents": 64,  # documents held out for evaluation
  })
  c.train = ml_collections.ConfigDict({
      "steps": 1000,
      "batch_size": 32,  # global, over all processes and devices
      "microbatches": 1,  # gradient accumulation
      "log_every": 50,
      "clip_norm": 1.0,
  })
  c.optimizer = ml_collections.ConfigDict({
      "name": "adamw",  # adamw | lamb | adafactor
      "learning_rate": 1e-4,
      "schedule": "linear",  # linear (warm-up then linear decay) | rsqrt | constant
      "warmup_steps": 100,
      "b1": 0.9,
      "b2": 0.999,
      "eps": 1e-6,
      "weight_decay": 0.01,
  })
  c.checkpoint = ml_collections.ConfigDict({"every": 500, "keep": 3, "best_metric": ""})
  c.eval = ml_collections.ConfigDict({"batches": 8, "batch_size": 32, "every": 0})
  c.mesh = ml_collections.ConfigDict({"dcn": 1, "data": -1, "fsdp": 1, "tensor": 1})
  c.rules = DEFAULT_RULES
  return c


def bert_model(**overrides) -> ml_collections.ConfigDict:
  """BERT-base; sizes and conventions overridden per config (RoBERTa, ALBERT and the tiny ones)."""
  model = ml_collections.ConfigDict({
      "family": "bert",
      "vocab_size": 30522,
      "hidden_size": 768,
      "num_layers": 12,
      "num_heads": 12,
      "intermediate_size": 3072,
      "embedding_size": 0,
      "embedding_projection": False,
      "max_position": 512,
      "type_vocab_size": 2,
      "position_offset": False,
      "pad_token_id": 0,
      "num_hidden_groups": 1,
      "inner_group_num": 1,
      "share": "none",
      "hidden_act": "gelu",
      "dropout": 0.1,
      "attention_dropout": 0.1,
      "layer_norm_eps": 1e-12,
      "initializer_range": 0.02,
      "pooler": True,
      "sentence_head": "nsp",
      "scan_layers": False,
      "remat": "none",
      "dtype": "float32",
  })
  model.update(overrides)
  return model


def albert_model(**overrides) -> ml_collections.ConfigDict:
  """ALBERT-base (v2): E=128 projected to H=768, every layer shared, SOP, no dropout."""
  settings = dict(vocab_size=30000, embedding_size=128, embedding_projection=True, share="all",
                  hidden_act="gelu_new", dropout=0.0, attention_dropout=0.0, sentence_head="sop")
  settings.update(overrides)
  return bert_model(**settings)


def roberta_model(**overrides) -> ml_collections.ConfigDict:
  """RoBERTa-base: BERT-base sizes, V=50265, positions offset past padding id 1, one segment type, no NSP."""
  settings = dict(vocab_size=50265, max_position=514, type_vocab_size=1, position_offset=True, pad_token_id=1,
                  layer_norm_eps=1e-5, pooler=False, sentence_head="none")
  settings.update(overrides)
  return bert_model(**settings)


def masked_lm_objective(**overrides) -> ml_collections.ConfigDict:
  """BERT's objective: 15% of tokens, 80/10/10, NSP on segment pairs; ALBERT/RoBERTa override."""
  objective = ml_collections.ConfigDict({
      "name": "masked_lm",
      "mask_rate": 0.15,
      "max_predictions": 20,
      "mask_token_fraction": 0.8,
      "random_token_fraction": 0.1,
      "whole_word": False,
      "max_ngram": 1,  # ALBERT: 3, lengths drawn with p(n) proportional to 1/n
      "sentence_task": "nsp",  # nsp | sop | none
      "packing": "pairs",  # pairs (BERT/ALBERT segments A and B) | full_sentences (RoBERTa, across documents)
      "short_seq_prob": 0.1,
  })
  objective.update(overrides)
  return objective


def bert_config(**model_overrides) -> ml_collections.ConfigDict:
  """BERT's recipe: AdamW lr 1e-4, 10k warm-up then linear decay, batch 256, 1M steps."""
  c = base_config()
  c.model = bert_model(**model_overrides)
  c.objective = masked_lm_objective()
  c.train.update(steps=1_000_000, batch_size=256, log_every=100)
  c.optimizer.update(learning_rate=1e-4, warmup_steps=10_000, weight_decay=0.01)
  c.checkpoint.every = 10_000
  return c


def roberta_config(**model_overrides) -> ml_collections.ConfigDict:
  """RoBERTa's recipe: dynamic masking, full sentences, no NSP; lr 6e-4, b2 0.98, batch 8k, 500k steps."""
  c = bert_config()
  c.model = roberta_model(**model_overrides)
  c.objective = masked_lm_objective(sentence_task="none", packing="full_sentences", max_predictions=80)
  c.data.seq_len = 512
  c.train.update(steps=500_000, batch_size=8192)
  c.optimizer.update(learning_rate=6e-4, warmup_steps=24_000, b2=0.98)
  return c


def albert_config(**model_overrides) -> ml_collections.ConfigDict:
  """ALBERT's recipe: n-gram masking, SOP, LAMB lr 0.00176, batch 4096, 125k steps."""
  c = bert_config()
  c.model = albert_model(**model_overrides)
  c.objective = masked_lm_objective(sentence_task="sop", max_ngram=3)
  c.data.seq_len = 512
  c.train.update(steps=125_000, batch_size=4096)
  c.optimizer.update(name="lamb", learning_rate=0.00176, warmup_steps=3_125, eps=1e-6)
  return c


def tiny(c: ml_collections.ConfigDict, **model_overrides) -> ml_collections.ConfigDict:
  """Shrinks a family's config to something that trains in minutes on a laptop CPU."""
  c.model.update(vocab_size=4096, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
                 max_position=130 if c.model.position_offset else 128)
  c.model.update(model_overrides)
  c.data.seq_len = 64
  c.objective.max_predictions = 10
  c.train.update(steps=300, batch_size=32, log_every=25)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=30)
  c.checkpoint.every = 100
  c.eval.update(batches=4, batch_size=32)
  return c
