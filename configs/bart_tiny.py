"""A tiny BART (d64 ff128 L2+2 A4, V4096, 64 positions) for tests and quick experiments: no published model.
BART's recipe (recipes.bart_config) cut by recipes.quick_run to 300 steps of 32 x 64 tokens, lr 1e-3, with the
default SentencePiece tokenizer: [PAD] at BART's id 1, so </s> is 0 and [CLS] (the <s> of every block) 3."""

from bert_jax import recipes


def get_config():
  c = recipes.bart_config(vocab_size=4096, hidden_size=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                           num_decoder_heads=4, intermediate_size=128, decoder_intermediate_size=128,
                           max_position=64, pad_token_id=1, bos_token_id=3, eos_token_id=0)
  c.data.tokenizer_type = "unigram"
  c.train.clip_norm = 1.0
  return recipes.quick_run(c, learning_rate=1e-3)
