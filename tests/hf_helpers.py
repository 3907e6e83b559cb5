"""Shared by tests/test_hf_tokenizer_in.py and tests/test_finetune.py: a small corpus of sentences and a tiny random
Hugging Face BERT with a WordPiece vocabulary trained on it, saved nowhere until the caller does; nothing is
downloaded."""

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # local directories only (read when huggingface_hub is imported)

import numpy as np

WORDS = ("Domain adaptive pretraining keeps the checkpoint's vocabulary and ids while the model reads new text "
         "about proteins, enzymes, kinases, ligands, receptors, assays and their measured affinities; "
         "Reviewers asked: which residues bind? None of the 12 mutants (K48R, D52N) folded.").split()
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def hf_corpus(directory: Path) -> tuple[Path, list[list[str]]]:
  """30 documents of 3-5 sentences, one sentence a line, a blank line between documents."""
  rng = np.random.default_rng(0)
  documents = [[" ".join(rng.choice(WORDS, rng.integers(6, 14))) + "." for _ in range(rng.integers(3, 6))]
               for _ in range(30)]
  path = directory / "corpus.txt"
  path.write_text("\n\n".join("\n".join(d) for d in documents) + "\n")
  return path, documents


def sentences(documents) -> list[str]:
  return [s for d in documents for s in d]


def hf_bert(hf_dir: Path, documents):
  """A WordPiece tokenizer trained on the documents (vocab.txt in hf_dir) and a tiny random BertForPreTraining."""
  import tokenizers
  import transformers

  wordpiece = tokenizers.BertWordPieceTokenizer(lowercase=True)
  wordpiece.train_from_iterator(sentences(documents), vocab_size=150,
                                special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
  wordpiece.save_model(str(hf_dir))
  hf = transformers.BertTokenizer(str(hf_dir / "vocab.txt"))
  model = transformers.BertForPreTraining(transformers.BertConfig(vocab_size=len(hf), max_position_embeddings=64,
                                                                  **TINY))
  return hf, model
