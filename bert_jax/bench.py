"""Train-step benchmarks: our jitted step and, for comparison, transformers' PyTorch BertForPreTraining.

Each framework runs in its own worker process (`python -m bert_jax.bench`) so that its peak host memory
is its own and neither library's threads or allocator touch the other's numbers. The parent
(`run_benchmark`) sends commands over the worker's stdin and reads one JSON line per command back:

  run N   N training steps, each timed to completion -> {"step_seconds": [...], "compilations": int}
  peak    the best FLOP/s of a large matmul in the compute dtype (XLA's or PyTorch's) -> {"flops": float}
  quit    -> {"peak_rss_bytes": int}, then the worker exits

Both workers train on the same synthetic batches (objective.synthetic_batch, drawn by the parent into an
.npz file): the same tokens, masked positions, labels and sentence labels. The PyTorch worker gets the config
as JSON and never imports JAX. With two workers the parent alternates their rounds (A B A B ...) so that the
noise of a shared machine falls on both alike. The parent never starts a JAX backend (on an accelerator it
would take the device's memory); the JAX worker reports the device, FLOPs per token and compile time. Peak memory is the kernel's high-water mark of the worker's own
address space (VmHWM; ru_maxrss would include the parent's size, which a child inherits across exec on Linux).
"""

import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from bert_jax import config as config_lib
from bert_jax.errors import UserError

SYNTHETIC_BATCHES = 4  # distinct batches cycled through the timed steps
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
DEMO_VOCAB_LIMIT = 4096  # the demo corpus supports a SentencePiece vocabulary of about this size at most


def bench_overrides(config: Any, batch_size: int | None, seq_len: int | None) -> list[str]:
  """Overrides that size a config for the benchmark; masked LM predicts mask_rate of the new length."""
  overrides = []
  if batch_size is not None:
    overrides.append(f"train.batch_size={batch_size}")
  if seq_len is not None:
    overrides.append(f"data.seq_len={seq_len}")
    if "max_predictions" in config.objective and "mask_rate" in config.objective:
      overrides.append(f"objective.max_predictions={max(1, math.ceil(config.objective.mask_rate * seq_len))}")
  return overrides


@contextlib.contextmanager
def compile_events() -> Iterator[list[tuple[str, float, str]]]:
  """Collects (event, seconds, function name) of every trace, lowering and backend compile in the block."""
  events: list[tuple[str, float, str]] = []

  def listen(event: str, seconds: float, **kwargs) -> None:
    if event in COMPILE_EVENTS:
      events.append((event, seconds, str(kwargs.get("fun_name", ""))))

  import jax

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    yield events
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)


def _named(name: str, fun_name: str | None) -> bool:
  return fun_name is None or name.removeprefix("jit(").removesuffix(")") == fun_name


def backend_compiles(events: Sequence[tuple[str, float, str]], fun_name: str | None = None) -> int:
  """How many programs were compiled (all, or those of the jitted function `fun_name`)."""
  return sum(1 for event, _, name in events if event == BACKEND_COMPILE_EVENT and _named(name, fun_name))


def compile_seconds(events: Sequence[tuple[str, float, str]], fun_name: str) -> float:
  """Tracing, lowering and compiling `fun_name` (nested functions' events overlap these and are left out)."""
  return sum(seconds for _, seconds, name in events if _named(name, fun_name))


PEAK_MATMUL_SIZE = 2048


def matmul_flops_per_second(matmul: Callable[[], Any], size: int = PEAK_MATMUL_SIZE, repeats: int = 5) -> float:
  """The best FLOP/s of `matmul()`, a blocking [size, size] x [size, size] product, after one warm-up call."""
  matmul()
  best = math.inf
  for _ in range(repeats):
    start = time.perf_counter()
    matmul()
    best = min(best, time.perf_counter() - start)
  return 2.0 * size ** 3 / best


def matmul_peak_flops(dtype: str, size: int = PEAK_MATMUL_SIZE) -> float:
  """The best FLOP/s of a [size, size] x [size, size] matmul in `dtype` on the first device."""
  import jax
  import jax.numpy as jnp

  keys = jax.random.split(jax.random.key(0))
  a, b = (jax.random.normal(k, (size, size), jnp.float32).astype(dtype) for k in keys)
  matmul = jax.jit(jnp.dot)
  return matmul_flops_per_second(lambda: matmul(a, b).block_until_ready(), size)


def peak_rss_bytes() -> int:
  """This process's peak resident memory."""
  try:
    with open("/proc/self/status") as status:
      return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
  except FileNotFoundError:  # macOS reports ru_maxrss in bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def write_batches(config: Any, path: str) -> None:
  """SYNTHETIC_BATCHES global batches of the config's objective, batch i drawn with seed (config.seed, i)."""
  from bert_jax.objectives import get_objective

  objective = get_objective(config)
  batches = [objective.synthetic_batch(config.train.batch_size, np.random.default_rng((config.seed, i)))
             for i in range(SYNTHETIC_BATCHES)]
  np.savez(path, **{f"{i}/{name}": x for i, batch in enumerate(batches) for name, x in batch.items()})


def read_batches(path: str) -> list[dict]:
  with np.load(path) as data:
    batches: dict[int, dict] = {}
    for key in data.files:
      index, name = key.split("/")
      batches.setdefault(int(index), {})[name] = data[key]
  return [batches[i] for i in sorted(batches)]


class JaxStep:
  """Our Trainer's jitted step on the synthetic batches, placed on the devices before timing."""

  def __init__(self, config: Any, batches: list[dict]):
    import jax

    from bert_jax import params as params_lib
    from bert_jax.train import batches as batches_lib
    from bert_jax.train.loop import Trainer

    self.dtype = config.model.dtype
    self.trainer = Trainer(config)
    self.state = self.trainer.init_state()
    self.batches = [batches_lib.to_global(b, self.trainer.batch_shardings, config.train.batch_size)
                    for b in batches]
    self.steps = 0
    with compile_events() as events:
      self.first_step_seconds = self.run(1)[0]
    self.compile_seconds = compile_seconds(events, "train_step")
    device = jax.devices()[0]
    self.description = {"device_kind": device.device_kind, "device_count": jax.device_count(),
                        "flops_per_token": params_lib.flops_per_token(config)}

  def run(self, steps: int) -> list[float]:
    import jax

    times = []
    for _ in range(steps):
      start = time.perf_counter()
      self.state, outputs = self.trainer.train_step(self.state, self.batches[self.steps % len(self.batches)])
      jax.block_until_ready((self.state, outputs))
      times.append(time.perf_counter() - start)
      self.steps += 1
    return times

  def peak(self) -> float:
    return matmul_peak_flops(self.dtype)


def check_hf_comparable(config: Any) -> None:
  """transformers' BERT models the config exactly: plain BERT, masked LM with NSP or no sentence task, float32."""
  model = config.model
  if (model.family != "bert" or model.embedding_projection or model.share != "none" or model.position_offset
      or model.embedding_size not in (0, model.hidden_size) or model.num_hidden_groups != 1
      or model.inner_group_num != 1):
    raise UserError("--compare-hf compares plain BERT configs (no ALBERT factorization or sharing, no RoBERTa "
                    "positions); choose a bert_* config")
  if config.objective.name != "masked_lm" or config.objective.sentence_task not in ("nsp", "none"):
    raise UserError("--compare-hf needs the masked_lm objective with objective.sentence_task=nsp or none")
  if model.dtype != "float32":
    raise UserError("--compare-hf compares float32 training; set --config.model.dtype=float32")


def hf_bert_config(model: Any):
  """transformers.BertConfig of the same size as a plain BERT model config."""
  import transformers

  return transformers.BertConfig(
      vocab_size=model.vocab_size, hidden_size=model.hidden_size, num_hidden_layers=model.num_layers,
      num_attention_heads=model.num_heads, intermediate_size=model.intermediate_size, hidden_act=model.hidden_act,
      hidden_dropout_prob=model.dropout, attention_probs_dropout_prob=model.attention_dropout,
      max_position_embeddings=model.max_position, type_vocab_size=model.type_vocab_size,
      layer_norm_eps=model.layer_norm_eps, initializer_range=model.initializer_range, pad_token_id=model.pad_token_id)


def hf_batch(batch: dict) -> dict:
  """Our masked-LM features as BertForPreTraining's inputs: labels at the masked positions, -100 elsewhere."""
  import torch

  labels = np.full(batch["input_ids"].shape, -100, np.int64)
  rows, slots = np.nonzero(batch["masked_weights"])
  labels[rows, batch["masked_positions"][rows, slots]] = batch["masked_ids"][rows, slots]
  inputs = {"input_ids": batch["input_ids"], "token_type_ids": batch["token_type_ids"],
            "attention_mask": batch["attention_mask"], "labels": labels}
  if "sentence_label" in batch:
    inputs["next_sentence_label"] = batch["sentence_label"]
  return {name: torch.from_numpy(np.asarray(x, np.int64)) for name, x in inputs.items()}


class TorchStep:
  """transformers' BertForPreTraining (random weights from a config) with torch AdamW, all CPU threads;
  weight decay off biases and LayerNorm weights, as in our optimizer."""

  def __init__(self, config: Any, batches: list[dict]):
    import torch
    import transformers

    check_hf_comparable(config)
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(config.seed)
    hf_config = hf_bert_config(config.model)
    if config.objective.sentence_task == "nsp":
      self.model = transformers.BertForPreTraining(hf_config)
    else:
      self.model = transformers.BertForMaskedLM(hf_config)
    self.model.train()
    no_decay = lambda name: name.endswith(".bias") or "LayerNorm" in name
    named = list(self.model.named_parameters())
    o = config.optimizer
    groups = [{"params": [p for n, p in named if not no_decay(n)], "weight_decay": o.weight_decay},
              {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0}]
    self.optimizer = torch.optim.AdamW(groups, lr=o.learning_rate, betas=(o.b1, o.b2), eps=o.eps)
    self.clip_norm = config.train.clip_norm
    self.batches = [hf_batch(b) for b in batches]
    self.steps = 0
    self.compile_seconds = None
    self.description = {"torch_threads": torch.get_num_threads()}
    self.first_step_seconds = self.run(1)[0]

  def run(self, steps: int) -> list[float]:
    import torch

    times = []
    for _ in range(steps):
      start = time.perf_counter()
      loss = self.model(**self.batches[self.steps % len(self.batches)]).loss
      loss.backward()
      if self.clip_norm:
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
      self.optimizer.step()
      self.optimizer.zero_grad(set_to_none=True)
      times.append(time.perf_counter() - start)
      self.steps += 1
    return times

  def peak(self) -> float:
    """The best FLOP/s of a float32 matmul in PyTorch (its BLAS, all threads)."""
    import torch

    a, b = torch.randn(PEAK_MATMUL_SIZE, PEAK_MATMUL_SIZE), torch.randn(PEAK_MATMUL_SIZE, PEAK_MATMUL_SIZE)
    return matmul_flops_per_second(lambda: torch.mm(a, b))


def worker_main(argv: Sequence[str]) -> None:
  """A worker: argv = [framework, JSON settings]; commands on stdin, replies on the original stdout (everything
  the libraries print goes to stderr)."""
  framework, settings = argv[0], json.loads(argv[1])
  replies = os.fdopen(os.dup(1), "w", buffering=1)
  os.dup2(2, 1)
  batches = read_batches(settings["batches"])
  try:
    if framework == "jax":
      step = JaxStep(config_lib.load_config(settings["spec"], settings["overrides"]), batches)
    else:
      import ml_collections

      step = TorchStep(ml_collections.ConfigDict(settings["config"]), batches)
  except UserError as e:
    replies.write(json.dumps({"error": str(e)}) + "\n")
    return
  replies.write(json.dumps({"compile_seconds": step.compile_seconds, "first_step_seconds": step.first_step_seconds,
                            **step.description}) + "\n")
  for line in sys.stdin:
    command, *args = line.split()
    if command == "run":
      if framework == "jax":
        with compile_events() as events:
          times = step.run(int(args[0]))
        reply = {"step_seconds": times, "compilations": backend_compiles(events)}
      else:
        reply = {"step_seconds": step.run(int(args[0])), "compilations": 0}
    elif command == "peak":
      reply = {"flops": step.peak()}
    else:
      replies.write(json.dumps({"peak_rss_bytes": peak_rss_bytes()}) + "\n")
      return
    replies.write(json.dumps(reply) + "\n")


class Worker:
  """The parent's handle on one worker process."""

  def __init__(self, framework: str, settings: dict):
    self.framework = framework
    self.log = tempfile.TemporaryFile(mode="w+")
    self.process = subprocess.Popen([sys.executable, "-m", "bert_jax.bench", framework, json.dumps(settings)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
    self.started = self._reply()

  def _reply(self) -> dict:
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
          "peak_host_memory_bytes": finished["peak_rss_bytes"]}


def run_benchmark(spec: str, overrides: Sequence[str], steps: int, warmup: int, rounds: int, compare_hf: bool,
                  progress: Callable[[str], None] = lambda message: None) -> dict:
  """Starts the workers, warms them up, alternates `rounds` rounds of steps between them, and summarizes."""
  config = config_lib.load_config(spec, overrides)
  scratch = tempfile.TemporaryDirectory(prefix="bert_jax_bench_")
  settings = {"spec": spec, "overrides": list(overrides), "config": config.to_dict(),
              "batches": os.path.join(scratch.name, "batches.npz")}
  write_batches(config, settings["batches"])
  progress(f"compiling the JAX train step ({config.model.family}, batch {config.train.batch_size} x "
           f"{config.data.seq_len}, {config.model.dtype})")
  workers = [Worker("jax", settings)]
  try:
    flops_per_token = workers[0].started["flops_per_token"]
    if compare_hf:
      progress("building transformers' BertForPreTraining in PyTorch")
      workers.append(Worker("torch", settings))
    for worker in workers:
      if warmup:
        worker.ask(f"run {warmup}")
    times: dict[str, list[float]] = {w.framework: [] for w in workers}
    compilations, peak, hf_peak = 0, 0.0, 0.0
    per_round = max(1, math.ceil(steps / rounds))
    for r in range(rounds):
      for worker in workers:
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
  if compare_hf:
    result["hf"] = _summary(config, workers[1].started, times["torch"], finished["torch"], flops_per_token, peak)
    result["hf"]["torch_threads"] = workers[1].started["torch_threads"]
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


if __name__ == "__main__":
  worker_main(sys.argv[1:])
