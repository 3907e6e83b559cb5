"""The input pipeline: text sources -> SentencePiece tokenizer -> prepared TFRecords -> tf.data batches.

  sources.py    documents (lists of sentences) from text files, JSON lines, TFDS or the built-in demo corpus
  tokenizer.py  training and loading SentencePiece models; the special ids objectives need
  prepare.py    a source tokenized once into sharded TFRecords that keep sentence and document boundaries
  segments.py   documents -> token sequences in graph ops (BERT's segment pairs, RoBERTa's full sentences)
  pipeline.py   what training and evaluation call: prepare_if_needed, train_dataset, eval_dataset
  atomic.py      directories and files written under a private name and published whole; a full disk as one line
"""
