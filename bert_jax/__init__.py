"""Sharded pretraining of BERT, RoBERTa, ALBERT, XLNet and T5 in JAX/Flax."""

__version__ = "0.1.0"
