"""`bert-jax bench`'s measuring machinery, kept apart from the library: the worker processes and their line
protocol (run.py, worker.py), and each objective's `transformers` model in PyTorch as the reference it is timed
against (torch_reference.py, with torch_encoders.py and torch_generative.py). Only bert_jax.commands.bench and the
scripts in benchmarks/ import it (tests/test_bench.py checks); it lives in the package so that `bert-jax bench`
works from any install."""
