"""The pretraining recipes: each `<family>_config` is that family's recipe as its original release ran it, with the
sources in its docstring; configs/README.md sets each against the original and names every difference. Model
settings are not listed here: a family's defaults are its settings dataclass's (bert_jax/models/), and a recipe
states only where it departs from them, as it states only what departs from base_config."""

import ml_collections

from bert_jax import models, objectives
from bert_jax.recipes.base import base_config

# T5 v1.1 (the t5 repository's released_checkpoints.md): gated-GELU feed-forward, an LM head of its own, no
# dropout in pretraining.
T5_V1_1 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout=0.0)


def bert_config(**model_overrides) -> ml_collections.ConfigDict:
  """BERT (Devlin et al. 2019, appendix A.2; google-research/bert's pretraining flags): 15% of tokens masked
  80/10/10 with NSP, AdamW lr 1e-4, 10k warm-up then linear decay, batch 256, 1M steps; BERT-base."""
  c = base_config()
  c.model = models.default_config("bert", **model_overrides)
  c.objective = objectives.default_config("masked_lm")  # 15%, 80/10/10, NSP, pairs: the settings' defaults
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
  c.objective = objectives.default_config("permutation_lm")  # the release's flags: the settings' defaults
  c.data.seq_len = 512
  c.train.update(steps=500_000, batch_size=8192)
  c.optimizer.update(learning_rate=4e-4, warmup_steps=40_000, eps=1e-6, min_lr_ratio=0.001)
  return c


def t5_config(**model_overrides) -> ml_collections.ConfigDict:
  """T5's baseline (Raffel et al. 2020, section 3.1): span corruption (15% noise, mean span 3), Adafactor,
  lr 0.01 for 10^4 steps then 1/sqrt(step), batch 128 x 512 input tokens, 2^19 steps; T5-small v1.0."""
  c = base_config()
  c.model = models.default_config("t5", **model_overrides)
  c.objective = objectives.default_config("span_corruption", z_loss=1e-4)  # Mesh TF's and t5x's z-loss
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
  c.objective = objectives.default_config("span_boundary")  # the release's masking: the settings' defaults
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
  # pretrain_helpers.mask's masking, one segment per document chunk, the loss weights: the settings' defaults
  c.objective = objectives.default_config("replaced_token_detection")
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
  # the paper's "20% of the time a bigram or a trigram", split evenly between the two (assumed); token types 0/1
  # bidirectional, 2 left-to-right, 3 right-to-left, 4/5 seq2seq
  c.objective = objectives.default_config("unilm", max_predictions=80, max_ngram=3, ngram_weights=(0.8, 0.1, 0.1),
                                          lm_segments=True)
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
  c.objective = objectives.default_config("causal_lm")  # predict: greedy, 32 tokens
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
  c.objective = objectives.default_config("text_infilling")  # fairseq's bart_large flags: the defaults
  c.data.update(seq_len=512, tokenizer_type="byte_bpe")
  c.train.update(steps=500_000, batch_size=8000, clip_norm=0.1)
  c.optimizer.update(learning_rate=4e-4, warmup_steps=10_000, eps=1e-8)
  return c


def mass_config(**model_overrides) -> ml_collections.ConfigDict:
  """MASS (Song et al. 2019, sections 3 and 4.1; microsoft/MASS's pretraining command for unsupervised NMT, with the
  XLM code's defaults it leaves): a fragment of half of each sentence masked 80/10/10 in the encoder and written by
  the decoder (word_mass 0.5); a 6 + 6-layer post-LN Transformer of width 1024, 8 heads, feed-forward 4096, GELU,
  dropout and attention dropout 0.1, learned positions, LayerNorm eps 1e-12, the output tied to the embeddings;
  sentences of at most 100 tokens; Adam betas (0.9, 0.98), eps 1e-8, no weight decay, lr 1e-4 after 4,000 warm-up
  steps then 1/sqrt(step), gradients clipped at 5; 8 GPUs x 3000 tokens a step; 100 epochs of 200,000 sentences
  counted 32 a step (XLM's nominal batch_size): 625k steps. Assumed: 800 sentences a step (3000 tokens of ~30-token
  sentences on each of 8 GPUs), a SentencePiece BPE vocabulary of 60,000 ids (the release: 60,000 fastBPE codes).
  Ours holds the peak rate through the warm-up (the release ramps up from 1e-7). The model is BART's (models/bart.py),
  which XLM's transformer matches but for its output bias."""
  c = base_config()
  c.model = models.default_config(
      "bart", vocab_size=60_000, hidden_size=1024, num_layers=6, num_decoder_layers=6, num_heads=8, num_decoder_heads=8,
      intermediate_size=4096, decoder_intermediate_size=4096, max_position=512, attention_dropout=0.1,
      layer_norm_eps=1e-12, pad_token_id=0, bos_token_id=3, eos_token_id=1)  # our SentencePiece's [CLS] and </s>
  c.model.update(model_overrides)
  c.objective = objectives.default_config("mass")  # the release's word_mass and word_mask_keep_rand: the defaults
  c.data.update(seq_len=128, tokenizer_type="bpe")
  c.train.update(steps=625_000, batch_size=800, clip_norm=5.0)
  c.optimizer.update(learning_rate=1e-4, schedule="rsqrt", warmup_steps=4_000, b2=0.98, eps=1e-8, weight_decay=0.0)
  return c


def distilbert_config(**model_overrides) -> ml_collections.ConfigDict:
  """DistilBERT (Sanh et al. 2019, section 3; huggingface/transformers' examples/research_projects/distillation:
  train.py's defaults, distiller.py and its README's example run): a student trained against a frozen BERT teacher
  (objective.teacher) on the teacher's masked-LM data without NSP or token types: soft-target cross-entropy at
  temperature 2 against the teacher's MLM logits at the masked positions (weight 5), the MLM loss (2) and a cosine loss
  between the student's and the teacher's last hidden states (1); the student starts from every other teacher layer;
  15% of tokens masked 80/10/10, sequences of up to 512 tokens, about 4,000 a batch (5 x 50 accumulated x 8 GPUs),
  AdamW lr 5e-4, b2 0.98, eps 1e-6, no weight decay, 5% warm-up then linear decay, gradients clipped at 5, 3 epochs.
  Assumed: the 3 epochs as 6,300 steps (about 8.4M sequences of BERT's corpus). The model: distilbert-base."""
  c = base_config()
  c.model = models.default_config("distilbert", **model_overrides)
  c.objective = objectives.default_config("distillation")  # the release's example run: the settings' defaults
  c.data.seq_len = 512
  c.train.update(steps=6_300, batch_size=4000, clip_norm=5.0)
  c.optimizer.update(learning_rate=5e-4, warmup_steps=315, b2=0.98, eps=1e-6, weight_decay=0.0)
  return c


def tinybert_config(**model_overrides) -> ml_collections.ConfigDict:
  """TinyBERT's general distillation (Jiao et al. 2020, section 4.2; huawei-noah/Pretrained-Language-Model's
  TinyBERT/general_distill.py and its README's run): a student BERT started at random learns a frozen BERT-base
  teacher's embedding output, hidden states (through the student's fit_dense to the teacher's 768) and attention
  logits (objective tinybert), on BERT's masked sentence pairs of 128 tokens, batch 256, lr 5e-5, 10% warm-up then
  linear decay, 3 epochs of English Wikipedia. Assumed: train.steps as BERT's 1M (the release counts epochs of its
  corpus; set it for yours). The model: TinyBERT-4L-312 (4 layers, width 312, 12 heads, FFN 1200)."""
  c = bert_config(hidden_size=312, num_layers=4, num_heads=12, intermediate_size=1200, fit_size=768)
  c.model.update(model_overrides)
  c.objective = objectives.default_config("tinybert")  # 20 predictions: 15% of 128 tokens
  c.data.seq_len = 128
  c.train.update(batch_size=256, steps=1_000_000)
  c.optimizer.update(learning_rate=5e-5, warmup_steps=100_000)
  return c


def ernie_config(**model_overrides) -> ml_collections.ConfigDict:
  """ERNIE 1.0 (Sun et al. 2019, sections 3.2 and 4.1; PaddlePaddle/ERNIE's ERNIE 1.0 release: script/pretrain.sh,
  pretrain_args.py, batching.py, optimization.py): knowledge masking in three stages, basic units (Chinese characters)
  then phrases then named entities, each masked unit whole and its tokens 80/10/10, 15% of the tokens, with NSP;
  Adam lr 1e-4, eps 1e-8, 5,000 warm-up steps then linear decay to 0, decay 0.01 except LayerNorm and biases,
  gradients clipped at 1.0, sequences of up to 512 tokens, 1M steps. Chinese: one piece per character, and jieba's
  words, noun phrases and entities (data.word_segmenter=jieba_pos) where the release had Baidu's lexical analysis.
  Assumed: the stages a third of the steps each (the paper gives no split); a batch of 128 x 512 (pretrain.sh's 8192
  tokens for each of its 8 GPUs). The model: ERNIE 1.0 base (the ernie family's defaults)."""
  c = bert_config()
  c.model = models.default_config("ernie", **model_overrides)
  c.objective.update(masking_unit="entity", max_predictions=80,
                     stages=((333_333, "piece"), (333_333, "phrase"), (333_334, "entity")))
  c.data.update(seq_len=512, tokenizer_type="character", word_segmenter="jieba_pos")
  c.train.update(steps=1_000_000, batch_size=128)
  c.optimizer.update(learning_rate=1e-4, warmup_steps=5_000, eps=1e-8)
  return c
