"""Training logs: a console line per log step under a tqdm progress bar, TensorBoard events in
W/tensorboard, and one JSON object per log step in W/metrics.jsonl (evaluations during training add rows whose
keys start with eval/). Only process 0 writes. A run resumed from step S first drops the rows and TensorBoard
events after S that an interrupted run wrote, so every step appears once. StepLogger turns a Trainer's step outputs
into those records: fetched at log steps, checked finite, with throughput, MFU and the time left."""

import datetime
import json
import time
from typing import Any

from etils import epath
import jax
import numpy as np
from tqdm import tqdm

from bert_jax import chips, flops
from bert_jax.errors import UserError
from bert_jax.files import storage

SKIP_ON_CONSOLE = ("step", "tokens_per_second", "learning_rate", "eta_seconds", "mfu", "grad_norm",
                   "flops_per_token")


def _format(value: float) -> str:
  return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def console_line(record: dict, total_steps: int) -> str:
  parts = [f"step {record['step']}/{total_steps}"]
  parts += [f"{k} {_format(v)}" for k, v in record.items() if k not in SKIP_ON_CONSOLE]
  parts.append(f"lr {record['learning_rate']:.3g}")
  if record.get("tokens_per_second") is not None:
    parts.append(f"{record['tokens_per_second']:,.0f} tok/s")
  if record.get("mfu") is not None:
    parts.append(f"MFU {100 * record['mfu']:.1f}%")
  if record.get("eta_seconds") is not None:
    parts.append(f"ETA {datetime.timedelta(seconds=round(record['eta_seconds']))}")
  return " | ".join(parts)


def _step_of(line: str) -> int | None:
  """The step of a row, or None for a line cut short by a crash."""
  try:
    return json.loads(line)["step"]
  except (ValueError, KeyError, TypeError):
    return None


def drop_rows_after(path: epath.Path, step: int) -> None:
  """Rewrites metrics.jsonl without its rows of steps after `step` (whole, then renamed)."""
  if not path.exists():
    return
  lines = path.read_text().splitlines(keepends=True)
  kept = [line for line in lines if (found := _step_of(line)) is not None and found <= step]
  if len(kept) != len(lines):
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(kept))
    partial.replace(path)


class MetricsWriter:

  def __init__(self, workdir: str, total_steps: int, start_step: int = 0, enabled: bool = True):
    self.total_steps = total_steps
    self.enabled = enabled
    self.step = start_step
    if not enabled:
      return
    from tensorboardX import SummaryWriter  # only the writing process needs it

    self.dir = epath.Path(workdir)
    self.dir.mkdir(parents=True, exist_ok=True)
    path = self.dir / "metrics.jsonl"
    drop_rows_after(path, start_step)
    self.jsonl = storage.LineLog(path)
    self.tensorboard = SummaryWriter(str(self.dir / "tensorboard"), purge_step=start_step + 1)
    self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, disable=None)

  def write(self, record: dict[str, Any]) -> None:
    """`record` holds `step` and float scalars."""
    if not self.enabled:
      return
    step = record["step"]
    self.jsonl.write(json.dumps(record) + "\n")
    self.jsonl.flush()
    for key, value in record.items():
      if key != "step" and value is not None:
        self.tensorboard.add_scalar(f"train/{key}", value, step)
    self.tensorboard.flush()
    self.bar.update(step - self.step)
    self.step = step
    self.bar.set_postfix(loss=f"{record['loss']:.4f}")
    tqdm.write(console_line(record, self.total_steps))

  def write_eval(self, record: dict[str, Any]) -> None:
    """An evaluation during training: a metrics.jsonl row with keys eval/..., TensorBoard eval/..., a line."""
    if not self.enabled:
      return
    step = record["step"]
    self.jsonl.write(json.dumps({"step": step, **{f"eval/{k}": v for k, v in record.items() if k != "step"}}) + "\n")
    self.jsonl.flush()
    for key, value in record.items():
      if key != "step":
        self.tensorboard.add_scalar(f"eval/{key}", value, step)
    self.tensorboard.flush()
    tqdm.write(" | ".join([f"eval at step {step}"] + [f"{k} {_format(v)}" for k, v in record.items() if k != "step"]))

  def info(self, line: str) -> None:
    if self.enabled:
      tqdm.write(line)

  def close(self) -> None:
    if self.enabled:
      self.bar.close()
      self.jsonl.close()
      self.tensorboard.close()


class StepLogger:
  """Collects step outputs on device, fetches them at log steps, checks them finite, writes records."""

  def __init__(self, trainer: Any, writer: MetricsWriter, start_step: int):
    config = trainer.config
    self.trainer, self.writer = trainer, writer
    self.total_steps = config.train.steps
    self.tokens_per_step = config.train.batch_size * config.data.seq_len
    self.flops_per_token = flops.flops_per_token(config)
    peak = chips.peak_flops(jax.devices()[0].device_kind)
    self.peak = peak * jax.device_count() if peak else None
    self.pending: list[tuple[int, dict]] = []
    self.records: list[dict] = []
    self.timed_step = start_step
    self.timed_at: float | None = None

  def add(self, step: int, outputs: dict) -> None:
    self.pending.append((step, outputs))
    if self.timed_at is None:  # the first step compiles: time from its end
      jax.block_until_ready(outputs["loss"])
      self.timed_step, self.timed_at = step, time.perf_counter()

  def flush(self) -> None:
    if not self.pending:
      return
    fetched = jax.device_get(self.pending)
    now = time.perf_counter()
    self.pending = []
    for step, outputs in fetched:
      if not np.isfinite(outputs["loss"]):
        raise UserError(f"the loss is {outputs['loss']} at step {step}; training stopped and nothing from this "
                        "step was saved; lower optimizer.learning_rate or check the data")
    step = fetched[-1][0]
    totals = [jax.tree_util.tree_map(lambda *xs: np.sum(xs, dtype=np.float64), *[o[k] for _, o in fetched])
              for k in ("sums", "metrics", "counts")]
    record = {"step": step, **self.trainer.objective.summarize(*totals)}
    record["learning_rate"] = float(self.trainer.host_schedule(step - 1))
    record["grad_norm"] = float(fetched[-1][1]["grad_norm"])
    record["flops_per_token"] = self.flops_per_token
    record["tokens_per_second"] = record["mfu"] = record["eta_seconds"] = None
    if step > self.timed_step:
      assert self.timed_at is not None  # add() set it, with the first pending step
      steps_per_second = (step - self.timed_step) / (now - self.timed_at)
      record["tokens_per_second"] = steps_per_second * self.tokens_per_step
      record["eta_seconds"] = (self.total_steps - step) / steps_per_second
      if self.peak:
        record["mfu"] = record["tokens_per_second"] * self.flops_per_token / self.peak
      self.timed_step, self.timed_at = step, now
    self.records.append(record)
    self.writer.write(record)
