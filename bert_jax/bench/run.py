"""The parent side of `bert-jax bench`: train-step benchmarks of our jitted step and, with --compare-hf,
transformers' PyTorch BertForPreTraining, plus the input pipeline's speed.

Each framework runs in its own worker process (worker.py) so that its peak host memory is its own and neither
library's threads or allocator touch the other's numbers. The parent (`run_benchmark`) sends commands over the
worker's stdin and reads one JSON line per command back:

  run N   N training steps, each timed to completion -> {"step_seconds": [...], "compilations": int}
  peak    the best FLOP/s of a large matmul in the compute dtype (XLA's or PyTorch's) -> {"flops": float}
  quit    -> {"peak_rss_bytes": int}, then the worker exits

Both workers train on the same synthetic batches (objective.synthetic_batch, drawn by the parent into an
.npz file): the same tokens, masked positions, labels and sentence labels. The PyTorch worker gets the config
as JSON and never imports JAX. With two workers the parent alternates their rounds (A B A B ...) so that the
noise of a shared machine falls on both alike; each round starts with an untimed step, as a worker's first step
after the other's round runs slower (its freed memory faulted in again: 0.5-1.4 s more for BERT-base on a VM).
The parent never starts a JAX backend (on an accelerator it would take the device's memory); the JAX worker
reports the device, FLOPs per token and compile time.
"""

from collections.abc import Callable, Sequence
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from bert_jax import config as config_lib
from bert_jax.errors import UserError

SYNTHETIC_BATCHES = 4  # distinct batches cycled through the timed steps
DEMO_VOCAB_LIMIT = 4096  # the demo corpus supports a SentencePiece vocabulary of about this size at most


def bench_overrides(config: Any, batch_size: int | None, seq_len: int | None, given: Sequence[str] = ()) -> list[str]:
  """Overrides that size a config for the benchmark. A new sequence length also sets what the recipe derives from
  it: masked LM's predictions (mask_rate of it), T5's decoder length (span corruption's arithmetic), XLNet's reuse,
  memory, permutation block and predictions (scaled with it, as 256, 384, 256 and 85 are to 512). Keys named in
  `given` (the user's own overrides) are left as given."""
  sized = {}
  if batch_size is not None:
    sized["train.batch_size"] = batch_size
  if seq_len is not None:
    sized["data.seq_len"] = seq_len
    o, m = config.objective, config.model
    if "max_predictions" in o and "mask_rate" in o:
      sized["objective.max_predictions"] = max(1, math.ceil(o.mask_rate * seq_len))
    if o.name == "span_corruption":
      from bert_jax.objectives import span_corruption

      sized["objective.targets_length"] = span_corruption.lengths(seq_len, o.noise_density,
                                                                  o.mean_noise_span_length)[1]
    if o.name == "permutation_lm":
      scale = seq_len / config.data.seq_len
      for key, value in (("model.reuse_len", m.reuse_len), ("model.mem_len", m.mem_len),
                         ("objective.perm_size", o.perm_size)):
        sized[key] = int(value * scale)
      sized["objective.num_predict"] = max(1, round(o.num_predict * scale))
  given_keys = {override.removeprefix("--config.").split("=")[0] for override in given}
  return [f"{key}={value}" for key, value in sized.items() if key not in given_keys]


def write_batches(config: Any, path: str) -> None:
  """SYNTHETIC_BATCHES global batches of the config's objective, batch i drawn with seed (config.seed, i)."""
  from bert_jax.objectives import get_objective

  objective = get_objective(config)
  batches = [objective.synthetic_batch(config.train.batch_size, np.random.default_rng((config.seed, i)))
             for i in range(SYNTHETIC_BATCHES)]
  np.savez(path, **{f"{i}/{name}": x for i, batch in enumerate(batches) for name, x in batch.items()})


class Worker:
  """The parent's handle on one worker process."""

  def __init__(self, framework: str, settings: dict):
    self.framework = framework
    self.log = tempfile.TemporaryFile(mode="w+")
    command = [sys.executable, "-m", "bert_jax.bench.worker", framework, json.dumps(settings)]
    self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                    text=True)
    self.started = self._reply()

  def _reply(self) -> dict:
    assert self.process.stdout is not None  # stdout=PIPE
    line = self.process.stdout.readline()
    if not line:
      self.process.wait()
      self.log.seek(0)
      tail = "".join(self.log.readlines()[-20:])
      raise RuntimeError(f"the {self.framework} benchmark worker exited with {self.process.returncode}:\n{tail}")
    reply = json.loads(line)
    if "error" in reply:
      self.close()
      raise UserError(reply["error"])
    return reply

  def ask(self, command: str) -> dict:
    assert self.process.stdin is not None  # stdin=PIPE
    self.process.stdin.write(command + "\n")
    self.process.stdin.flush()
    return self._reply()

  def finish(self) -> dict:
    reply = self.ask("quit")
    self.close()
    return reply

  def close(self) -> None:
    if self.process.stdin and not self.process.stdin.closed:
      self.process.stdin.close()
    self.process.wait()
    self.log.close()


def _summary(config: Any, started: dict, times: list[float], finished: dict, flops_per_token: float,
             peak: float | None) -> dict:
  step_seconds = statistics.median(times)
  tokens_per_second = config.train.batch_size * config.data.seq_len / step_seconds
  return {"tokens_per_second": tokens_per_second, "step_seconds": step_seconds,
          "compile_seconds": started["compile_seconds"], "first_step_seconds": started["first_step_seconds"],
          "mfu": tokens_per_second * flops_per_token / peak if peak else None,
          "peak_host_memory_bytes": finished["peak_rss_bytes"], "first_loss": finished["losses"][0],
          "peak_device_memory_bytes": finished["peak_device_memory_bytes"]}


def run_benchmark(spec: str, overrides: Sequence[str], steps: int, warmup: int, rounds: int, compare_hf: bool,
                  progress: Callable[[str], None] = lambda message: None) -> dict:
  """Starts the workers, warms them up, alternates `rounds` rounds of steps between them, and summarizes."""
  from bert_jax.bench import torch_reference

  config = config_lib.load_config(spec, overrides)
  scratch = tempfile.TemporaryDirectory(prefix="bert_jax_bench_")
  settings = {"spec": spec, "overrides": list(overrides), "config": config.to_dict(), "compare_hf": compare_hf,
              "batches": os.path.join(scratch.name, "batches.npz"),
              "weights": os.path.join(scratch.name, "weights.npz"),
              "reference": torch_reference.reference_path(config) if compare_hf else None}
  write_batches(config, settings["batches"])
  progress(f"compiling the JAX train step ({config.model.family}, batch {config.train.batch_size} x "
           f"{config.data.seq_len}, {config.model.dtype})")
  workers = [Worker("jax", settings)]
  try:
    flops_per_token = workers[0].started["flops_per_token"]
    if compare_hf:
      progress("building the transformers reference in PyTorch from the same initial parameters")
      workers.append(Worker("torch", settings))
    for worker in workers:
      if warmup:
        worker.ask(f"run {warmup}")
    times: dict[str, list[float]] = {w.framework: [] for w in workers}
    compilations, peak, hf_peak = 0, 0.0, 0.0
    per_round = max(1, math.ceil(steps / rounds))
    for r in range(rounds):
      for worker in workers:
        if len(workers) > 1:  # untimed: the switch from the other worker's round
          compilations += worker.ask("run 1")["compilations"]
        reply = worker.ask(f"run {per_round}")
        times[worker.framework] += reply["step_seconds"]
        compilations += reply["compilations"]
      peak = max(peak, workers[0].ask("peak")["flops"])
      if compare_hf:
        hf_peak = max(hf_peak, workers[1].ask("peak")["flops"])
      progress(f"round {r + 1}/{rounds}: " + ", ".join(
          f"{name} {config.train.batch_size * config.data.seq_len / statistics.median(t):,.0f} tokens/s"
          for name, t in times.items()))
    finished = {w.framework: w.finish() for w in workers}
  finally:
    for worker in workers:
      worker.close()
    scratch.cleanup()
  result = {"config": spec, "overrides": list(overrides), "batch_size": config.train.batch_size,
            "seq_len": config.data.seq_len, "dtype": config.model.dtype, "steps": per_round * rounds,
            "rounds": rounds, "device_kind": workers[0].started["device_kind"],
            "device_count": workers[0].started["device_count"], "cpu_count": os.cpu_count(),
            "flops_per_token": flops_per_token, "matmul_peak_flops": peak, "recompilations": compilations,
            **_summary(config, workers[0].started, times["jax"], finished["jax"], flops_per_token, peak)}
  chip_peak = workers[0].started["chip_peak_flops"]
  result["chip_peak_flops"] = chip_peak
  result["mfu_vs_chip_peak"] = result["tokens_per_second"] * flops_per_token / chip_peak if chip_peak else None
  if compare_hf:
    result["hf"] = _summary(config, workers[1].started, times["torch"], finished["torch"], flops_per_token, peak)
    result["hf"].update({k: workers[1].started[k] for k in ("torch_threads", "architecture", "optimizer", "compute")})
    result["hf"]["matmul_peak_flops"] = hf_peak
    result["speedup_vs_hf"] = result["tokens_per_second"] / result["hf"]["tokens_per_second"]
  return result


def pipeline_config(spec: str, overrides: Sequence[str]) -> Any:
  """The config whose input pipeline is measured: the demo corpus stands in for synthetic data, with a
  vocabulary it can support."""
  config = config_lib.load_config(spec, overrides)
  extra = []
  if config.data.source in ("synthetic", "demo"):
    extra.append("data.source=demo")
    if not config.data.tokenizer and config.model.vocab_size > DEMO_VOCAB_LIMIT:
      extra.append(f"model.vocab_size={DEMO_VOCAB_LIMIT}")
  return config_lib.load_config(spec, [*overrides, *extra])


def pipeline_tokens_per_second(config: Any, workdir: str, batches: int, warmup: int) -> float:
  """Tokens per second of finished batches from the training pipeline (prepared data in `workdir`)."""
  from bert_jax.data import pipeline
  from bert_jax.objectives import get_objective

  pipeline.prepare_if_needed(config, workdir)
  iterator = iter(pipeline.train_dataset(config, get_objective(config), workdir))
  for _ in range(warmup):
    next(iterator)
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  return batches * config.train.batch_size * config.data.seq_len / (time.perf_counter() - start)

