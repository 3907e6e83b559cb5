"""Subcommands of the `bert-jax` command line (see bert_jax/cli.py)."""
