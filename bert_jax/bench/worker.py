"""A benchmark worker process (`python -m bert_jax.bench.worker FRAMEWORK SETTINGS`): one framework's train
step on the synthetic batches, driven over stdin by run.py (see there for the protocol), and the timers it uses.

Peak memory is the kernel's high-water mark of the worker's own address space (VmHWM; ru_maxrss would include
the parent's size, which a child inherits across exec on Linux).
"""

from collections.abc import Callable, Iterator, Sequence
import contextlib
import json
import math
import os
import resource
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from bert_jax import config as config_lib
from bert_jax.errors import UserError

if TYPE_CHECKING:
  from bert_jax.bench.torch_reference import TorchStep

COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
PEAK_MATMUL_SIZE = 2048


@contextlib.contextmanager
def compile_events() -> Iterator[list[tuple[str, float, str]]]:
  """Collects (event, seconds, function name) of every trace, lowering and backend compile in the block."""
  events: list[tuple[str, float, str]] = []

  def listen(event: str, duration_secs: float, **kwargs: str | int) -> None:  # jax.monitoring's listener
    if event in COMPILE_EVENTS:
      events.append((event, duration_secs, str(kwargs.get("fun_name", ""))))

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


def matmul_flops_per_second(matmul: Callable[[], Any], size: int = PEAK_MATMUL_SIZE, repeats: int = 5) -> float:
  """The best FLOP/s of `matmul()`, a blocking [size, size] x [size, size] product, after one warm-up call."""
  matmul()
  best = math.inf
  for _ in range(repeats):
    start = time.perf_counter()
    matmul()
    best = min(best, time.perf_counter() - start)
  return 2.0 * size ** 3 / best


def peak_rss_bytes() -> int:
  """This process's peak resident memory."""
  try:
    with open("/proc/self/status") as status:
      return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
  except FileNotFoundError:  # macOS reports ru_maxrss in bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def read_batches(path: str) -> list[dict]:
  with np.load(path) as data:
    batches: dict[int, dict] = {}
    for key in data.files:
      index, name = key.split("/")
      batches.setdefault(int(index), {})[name] = data[key]
  return [batches[i] for i in sorted(batches)]


class JaxStep:
  """Our Trainer's jitted step on the synthetic batches, placed on the devices before timing."""

  def __init__(self, config: Any, batches: list[dict], weights_path: str | None = None):
    import jax

    from bert_jax import chips, flops
    from bert_jax.train import batches as batches_lib
    from bert_jax.train.trainer import Trainer

    self.dtype = config.model.dtype
    self.trainer = Trainer(config)
    self.state = self.trainer.init_state()
    if weights_path:  # the PyTorch reference starts from the same parameters
      from bert_jax.bench import torch_reference

      torch_reference.save_weights(torch_reference.export_weights(config, self.state.params), weights_path)
    self.batches = [batches_lib.to_global(b, self.trainer.batch_shardings, config.train.batch_size)
                    for b in batches]
    self.steps = 0
    self.losses: list[float] = []
    with compile_events() as events:
      self.first_step_seconds = self.run(1)[0]
    self.compile_seconds = compile_seconds(events, "train_step")
    device = jax.devices()[0]
    self.description = {"device_kind": device.device_kind, "device_count": jax.device_count(),
                        "flops_per_token": flops.flops_per_token(config),
                        "chip_peak_flops": chips.peak_flops(device.device_kind) if device.platform != "cpu" else None}

  def run(self, steps: int) -> list[float]:
    import jax

    times = []
    for _ in range(steps):
      start = time.perf_counter()
      self.state, outputs = self.trainer.train_step(self.state, self.batches[self.steps % len(self.batches)])
      jax.block_until_ready((self.state, outputs))
      times.append(time.perf_counter() - start)
      self.losses.append(float(outputs["loss"]))
      self.steps += 1
    return times

  def peak_device_memory(self) -> int | None:
    """The most accelerator memory any device held (None on CPU, whose memory is the process's)."""
    import jax

    stats = [device.memory_stats() or {} for device in jax.local_devices() if device.platform != "cpu"]
    peaks = [s["peak_bytes_in_use"] for s in stats if "peak_bytes_in_use" in s]
    return max(peaks) if peaks else None

  def peak_matmul(self, size: int) -> Callable[[], Any]:
    """A [size, size] x [size, size] product in the compute dtype on the first device, as the models take it
    (layers.dot_general: bfloat16 into float32 on the CPU)."""
    import jax
    import jax.numpy as jnp

    from bert_jax.models import layers

    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.random.normal(k, (size, size), jnp.float32).astype(self.dtype) for k in keys)
    product = jax.jit(lambda a, b: layers.dot_general(a, b, (((1,), (0,)), ((), ()))))
    return lambda: product(a, b).block_until_ready()


def worker_main(argv: Sequence[str]) -> None:
  """argv = [framework, JSON settings]; commands on stdin, replies on the original stdout (everything the
  libraries print goes to stderr)."""
  framework, settings = argv[0], json.loads(argv[1])
  replies = os.fdopen(os.dup(1), "w", buffering=1)
  os.dup2(2, 1)
  batches = read_batches(settings["batches"])
  step: JaxStep | TorchStep
  try:
    if framework == "jax":
      step = JaxStep(config_lib.load_config(settings["spec"], settings["overrides"]), batches,
                     settings["weights"] if settings["compare_hf"] else None)
    else:
      import ml_collections

      from bert_jax.bench import torch_reference

      step = torch_reference.TorchStep(ml_collections.ConfigDict(settings["config"]), batches,
                                       torch_reference.load_weights(settings["weights"]), settings["reference"])
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
      reply = {"flops": matmul_flops_per_second(step.peak_matmul(PEAK_MATMUL_SIZE))}
    else:
      device_memory = step.peak_device_memory() if isinstance(step, JaxStep) else None  # framework jax
      replies.write(json.dumps({"peak_rss_bytes": peak_rss_bytes(), "losses": step.losses,
                                "peak_device_memory_bytes": device_memory}) + "\n")
      return
    replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
  worker_main(sys.argv[1:])
