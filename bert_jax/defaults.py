"""The pretraining recipes every config starts from; a config file names one and lists what differs.

`base_config` holds what every run shares. Each `<family>_config` is that family's pretraining recipe as its
original release ran it, with the sources in its docstring; README.md ("Recipes: the originals and ours")
sets each against the original and names every difference. Model settings are not listed here: a family's
defaults are its settings dataclass's (bert_jax/models/), and a recipe states only where it departs from them.
"""

import ml_collections

from bert_jax import models

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

# T5 v1.1 (the t5 repository's released_checkpoints.md): gated-GELU feed-forward, an LM head of its own, no
# dropout in pretraining.
T5_V1_1 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout=0.0)


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


def bert_config(**model_overrides) -> ml_collections.ConfigDict:
  """BERT (Devlin et al. 2019, appendix A.2; google-research/bert's pretraining flags): 15% of tokens masked
  80/10/10 with NSP, AdamW lr 1e-4, 10k warm-up then linear decay, batch 256, 1M steps; BERT-base."""
  c = base_config()
  c.model = models.default_config("bert", **model_overrides)
  c.objective = ml_collections.ConfigDict({
      "name": "masked_lm",
      "mask_rate": 0.15,
      "max_predictions": 20,
      "mask_token_fraction": 0.8,
      "random_token_fraction": 0.1,
      "whole_word": False,
      "max_ngram": 1,  # ALBERT: 3 (whole words with whole_word), lengths drawn with p(n) proportional to 1/n
      "sentence_task": "nsp",  # nsp | sop | none
      "packing": "pairs",  # pairs (BERT/ALBERT segments A and B) | full_sentences (RoBERTa, across documents)
      "short_seq_prob": 0.1,
  })
  c.train.update(steps=1_000_000, batch_size=256)
  c.optimizer.update(learning_rate=1e-4, warmup_steps=10_000)
  return c


def roberta_config(**model_overrides) -> ml_collections.ConfigDict:
  """RoBERTa (Liu et al. 2019, Table 9; fairseq's release): BERT's recipe with dynamic masking of full
  sentences and no NSP; lr 6e-4, 24k warm-up, b2 0.98, batch 8k x 512, 500k steps, no gradient clipping.
  The model: BERT-base with the release's vocabulary (V50265) and conventions (positions offset past padding
  id 1, one segment type, LayerNorm eps 1e-5, no pooler) and its classification head (model.classifier)."""
  c = bert_config()
  c.model.update(vocab_size=50265, max_position=514, type_vocab_size=1, position_offset=True, pad_token_id=1,
                 layer_norm_eps=1e-5, pooler=False, sentence_head="none", classifier="roberta")
  c.model.update(model_overrides)
  c.objective.update(sentence_task="none", packing="full_sentences", max_predictions=80)
  c.data.seq_len = 512
  c.train.update(steps=500_000, batch_size=8192, clip_norm=0.0)
  c.optimizer.update(learning_rate=6e-4, warmup_steps=24_000, b2=0.98)
  return c


def albert_config(**model_overrides) -> ml_collections.ConfigDict:
  """ALBERT v2 (Lan et al. 2020, section 4.1; google-research/albert's pretraining flags): n-grams (n <= 3)
  of whole words, SOP, LAMB lr 0.00176 with 3,125 warm-up, batch 4096 x 512, 125k steps. The model:
  ALBERT-base, E=128 projected to H=768, every layer shared, no dropout (v2), gelu_new, V30000."""
  c = bert_config()
  c.model.update(vocab_size=30000, embedding_size=128, embedding_projection=True, share="all",
                 hidden_act="gelu_new", dropout=0.0, attention_dropout=0.0, sentence_head="sop")
  c.model.update(model_overrides)
  c.objective.update(sentence_task="sop", max_ngram=3, whole_word=True)
  c.data.seq_len = 512
  c.train.update(steps=125_000, batch_size=4096)
  c.optimizer.update(name="lamb", learning_rate=0.00176, warmup_steps=3_125, eps=1e-6)
  return c


def xlnet_config(**model_overrides) -> ml_collections.ConfigDict:
  """XLNet-Large's recipe (Yang et al. 2019, section 3.1 and the appendix's pretraining hyperparameters;
  zihangdai/xlnet's train flags) at the model's default size, XLNet-base: seq 512, memory 384, reuse 256, 85
  predicted tokens in spans (alpha 6, beta 1), factorization orders within blocks of 256, Adam lr 4e-4, 40k
  warm-up then linear decay to 0.001 x the peak (min_lr_ratio), batch 8192, 500k steps."""
  c = base_config()
  c.model = models.default_config("xlnet", **model_overrides)
  c.objective = ml_collections.ConfigDict({
      "name": "permutation_lm",
      "num_predict": 85,  # predicted tokens per example, about seq_len / K with K = 6
      "perm_size": 256,  # the factorization order is sampled within blocks of this many tokens
      "max_ngram": 5,  # target spans of n <= max_ngram tokens, p(n) proportional to 1/n
      "mask_alpha": 6,  # one span of n tokens in a context of n * mask_alpha / mask_beta tokens
      "mask_beta": 1,
      "bi_data": True,  # also emit every example read backwards (relative distances negated), as XLNet did
      "random_b_prob": 0.5,  # segment B comes from elsewhere in the corpus instead of following A
      "stream_steps": 64,  # with model.mem_len: batches for which each row continues one stretch of text
  })
  c.data.seq_len = 512
  c.train.update(steps=500_000, batch_size=8192)
  c.optimizer.update(learning_rate=4e-4, warmup_steps=40_000, eps=1e-6, min_lr_ratio=0.001)
  return c


def t5_config(**model_overrides) -> ml_collections.ConfigDict:
  """T5's baseline (Raffel et al. 2020, section 3.1): span corruption (15% noise, mean span 3), Adafactor,
  lr 0.01 for 10^4 steps then 1/sqrt(step), batch 128 x 512 input tokens, 2^19 steps; T5-small v1.0."""
  c = base_config()
  c.model = models.default_config("t5", **model_overrides)
  c.objective = ml_collections.ConfigDict({
      "name": "span_corruption",
      "noise_density": 0.15,
      "mean_noise_span_length": 3.0,
      "targets_length": 114,  # decoder length; at least what span_corruption.lengths predicts for data.seq_len
      "packing": True,  # several short examples per row, kept apart by segment ids
      "z_loss": 1e-4,  # + z_loss * log(Z)^2 per target token (Mesh TF, t5x); 0 turns it off
  })
  c.data.update(seq_len=512, extra_ids=100)
  c.train.update(steps=2 ** 19, batch_size=128, clip_norm=0.0)
  c.optimizer.update(name="adafactor", learning_rate=0.01, schedule="rsqrt", warmup_steps=10_000,
                     weight_decay=0.0)
  return c


def spanbert_config(**model_overrides) -> ml_collections.ConfigDict:
  """SpanBERT (Joshi et al. 2020, section 4.1 and appendix; facebookresearch/SpanBERT's pretraining command):
  geometric span masking (p 0.2, at most 10 words, 15%, 80/10/10 per span) with MLM + SBO, one segment of up to
  512 tokens, no NSP, no short sequences; AdamW lr 1e-4, eps 1e-8, decay 0.01, 10k warm-up then linear decay,
  batch 256 x 512, 2.4M steps. The model: BERT-base, cased vocabulary (V28996), no pooler."""
  c = base_config()
  c.model = models.default_config("spanbert", **model_overrides)
  c.objective = ml_collections.ConfigDict({
      "name": "span_boundary",
      "mask_rate": 0.15,
      "max_predictions": 80,  # ceil(0.15 x 510) = 77 at 512 tokens
      "mask_token_fraction": 0.8,
      "random_token_fraction": 0.1,
      "geometric_p": 0.2,  # span length n in words ~ p (1 - p)^(n - 1), clipped to n <= max_span
      "max_span": 10,
  })
  c.data.seq_len = 512
  c.train.update(steps=2_400_000, batch_size=256)
  c.optimizer.update(learning_rate=1e-4, warmup_steps=10_000, eps=1e-8)
  return c


def electra_config(**model_overrides) -> ml_collections.ConfigDict:
  """ELECTRA-Small's recipe (Clark et al. 2020, Table 6; google-research/electra's configure_pretraining.py and
  pretrain_helpers.mask): replaced-token detection with the paper's 1/4 generator, 15% of tokens masked (85% to
  [MASK], 15% left as they are, none random), gen_weight 1, disc_weight 50, AdamW lr 5e-4 (eps 1e-6, decay
  0.01), 10k warm-up then linear decay, gradients clipped at 1.0, batch 128 x 128, 1M steps; ELECTRA-Small."""
  c = base_config()
  c.model = models.default_config("electra", **model_overrides)
  # BERT's masking as pretrain_helpers.mask sets it; at most int((mask_prob + 0.005) * length) a sequence; one
  # segment per document chunk, 5% of them shorter (the release's random target length)
  c.objective = bert_config().objective
  c.objective.update(name="replaced_token_detection", max_predictions=19, mask_token_fraction=0.85,
                     random_token_fraction=0.0, sentence_task="none", short_seq_prob=0.05)
  # the loss weights, and the temperature of the generator's samples: softmax(logits / temperature)
  c.objective.update({"gen_weight": 1.0, "disc_weight": 50.0, "temperature": 1.0})
  c.data.seq_len = 128
  c.train.update(steps=1_000_000, batch_size=128)
  c.optimizer.update(learning_rate=5e-4, warmup_steps=10_000, eps=1e-6)
  return c


def unilm_config(**model_overrides) -> ml_collections.ConfigDict:
  """UniLM v1 (Dong et al. 2019, section 3.1 and 2.1; microsoft/unilm unilm-v1): one BERT encoder under four
  self-attention masks a batch (1/3 bidirectional with NSP, 1/3 seq2seq, 1/6 each direction), BERT's cloze targets
  in both segments (15%, 80/10/10; 80% of the spans one token, 20% a bigram or trigram), a segment embedding per LM
  (type_vocab_size 6); Adam lr 3e-5, 40k warm-up then linear decay, decay 0.01, dropout 0.1, batch 330 x 512, about
  770k steps. The model: BERT-large with bert-large-cased's vocabulary (V28996), which the paper starts from."""
  c = bert_config(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096, vocab_size=28996,
                  type_vocab_size=6)
  c.model.update(model_overrides)
  # the paper's "20% of the time a bigram or a trigram", split evenly between the two (assumed)
  c.objective.update(name="unilm", max_predictions=80, max_ngram=3, ngram_weights=(0.8, 0.1, 0.1))
  c.objective.lm_segments = True  # token types 0/1 bidirectional, 2 left-to-right, 3 right-to-left, 4/5 seq2seq
  c.data.seq_len = 512
  c.train.update(steps=770_000, batch_size=330)
  c.optimizer.update(learning_rate=3e-5, warmup_steps=40_000)
  return c


def gpt2_config(**model_overrides) -> ml_collections.ConfigDict:
  """GPT-2's recipe as far as it is published (Radford et al. 2019, section 2.3: byte-level BPE of 50,257 ids,
  1024-token context, batch 512; GPT-1, Radford et al. 2018, section 4.1: Adam at most 2.5e-4 after 2,000 warm-up
  steps then annealed to 0 on a cosine, weight decay 0.01 on all but biases and gains, dropout 0.1): causal LM on
  documents packed with <|endoftext|> between them; GPT-2 small. Assumed where the papers are silent: b2 0.999,
  gradients clipped at 1.0, and 600k steps of 512 x 1024 tokens (about the 300B tokens of the open reproductions,
  e.g. nanoGPT's)."""
  c = base_config()
  c.model = models.default_config("gpt2", **model_overrides)
  c.objective = ml_collections.ConfigDict({
      "name": "causal_lm",
      "max_new_tokens": 32,  # `bert-jax predict`: tokens written after each text
      "temperature": 0.0,  # 0: greedy; > 0: sample from softmax(logits / temperature) (--top-k, top_p cut it)
      "top_p": 1.0,  # nucleus sampling: the fewest tokens whose probability reaches top_p (1.0: all)
      "seed": 0,  # sampling's random key
  })
  c.data.update(seq_len=1024, tokenizer_type="byte_bpe")
  c.train.update(steps=600_000, batch_size=512)
  c.optimizer.update(learning_rate=2.5e-4, schedule="cosine", warmup_steps=2_000, eps=1e-8)
  return c


def bart_config(**model_overrides) -> ml_collections.ConfigDict:
  """BART-large's recipe (Lewis et al. 2020, section 5.1: text infilling of 30% of the tokens in Poisson(3) spans plus
  permutation of all sentences, GPT-2's byte-level BPE, batch 8000, 500k steps, no dropout for the last 10%; the rest
  from the authors' pretraining command in fairseq issue #1899 and fairseq's denoising flags: blocks of whole
  sentences up to 512 tokens, 10% of the masks random tokens, one mask per span, Adam lr 4e-4 with 10k warm-up then
  linear decay, betas (0.9, 0.999), eps 1e-8, weight decay 0.01, gradients clipped at 0.1, dropout and attention
  dropout 0.1). Assumed: the 8000 are sequences of 512 tokens; the last 10% keep their dropout here; the command's
  poisson-lambda 3.5 is taken as the paper's 3. The model: bart-large."""
  c = base_config()
  c.model = models.default_config("bart", attention_dropout=0.1)
  c.model.update(model_overrides)
  c.objective = ml_collections.ConfigDict({
      "name": "text_infilling",
      "mask_ratio": 0.3,  # of the words; ceil(0.3 x words) masked
      "random_ratio": 0.1,  # a span's mask (and an insertion) is a random token instead
      "poisson_lambda": 3.0,  # span lengths in words; 0-length spans insert one mask
      "permute_sentences": True,  # every block's sentences in a random order
  })
  c.data.update(seq_len=512, tokenizer_type="byte_bpe")
  c.train.update(steps=500_000, batch_size=8000, clip_norm=0.1)
  c.optimizer.update(learning_rate=4e-4, warmup_steps=10_000, eps=1e-8)
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


# What a fine-tuning run's task reads (bert_jax/data/tasks.py); `bert-jax finetune` fills it from its arguments.
TASK = {"name": "", "data_dir": "", "train": "", "dev": "", "test": "", "text_a": "sentence", "text_b": "",
        "label": "label", "kind": "classification", "labels": "", "metrics": "", "epochs": 3.0,
        "warmup_proportion": 0.1}


def finetune_config(pretrained: ml_collections.ConfigDict, **task) -> ml_collections.ConfigDict:
  """BERT's fine-tuning recipe (google-research/bert run_classifier.py; the paper's section 4.1 and appendix A.3)
  on a pretrained model's config: a classification head, AdamW lr 2e-5 (the paper's grid: 5e-5, 3e-5, 2e-5; batch
  16 or 32; 3 epochs), weight decay 0.01, warm-up over the first 10% of the steps then linear decay, gradients
  clipped at 1.0, max_seq_length 128 (or the model's positions, where fewer), the model's dropout kept; evaluated
  and checkpointed every epoch, the best epoch kept by the task's first metric. train.steps 0 and
  optimizer.warmup_steps -1 stand for "from task.epochs and task.warmup_proportion" until `bert_jax.finetune` knows
  the task's size. A family whose release changed this recipe says how in its descriptor (`finetune`: ELECTRA's
  layer-wise decay, BART's fairseq GLUE recipe, GPT-1's, T5's text to text); the text framing is its pretraining's."""
  c = ml_collections.ConfigDict(pretrained.to_dict())
  family = models.descriptor(pretrained.model)
  c.task = ml_collections.ConfigDict(TASK)
  c.task.update(task)
  c.data.update(source="task", seq_len=128)
  c.train.update(steps=0, batch_size=32, microbatches=1, log_every=10, clip_norm=1.0)
  c.optimizer = base_config().optimizer
  if c.task.name == "squad":  # BERT's SQuAD v1.1 recipe: 384 tokens, stride 128, lr 5e-5, batch 32, 3 epochs
    c.model.update(head="span")
    c.objective = ml_collections.ConfigDict({"name": "question_answering", "doc_stride": 128, "max_query_len": 64,
                                             "max_answer_len": 30, "n_best": 20, "null_threshold": 0.0})
    c.data.seq_len = 384
    c.optimizer.update(learning_rate=5e-5, warmup_steps=-1, eps=1e-6)
  else:
    c.model.update(head="classification")
    c.objective = ml_collections.ConfigDict({"name": "classification",
                                             "framing": family.finetune_framing(pretrained.objective)})
    c.optimizer.update(learning_rate=2e-5, warmup_steps=-1, eps=1e-6)
  if family.finetune:  # the family's changes to this recipe (its descriptor's)
    family.finetune(c, pretrained)
  positions = models.max_sequence_length(c.model)  # a small model's table may hold fewer than the recipe's tokens
  c.data.seq_len = min(c.data.seq_len, positions or c.data.seq_len)
  c.checkpoint.update(every=0, keep=1, best_metric="")
  c.eval.update(every=0, batch_size=32)
  return c
