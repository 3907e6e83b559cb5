"""Training logs: a console line per log step under a tqdm progress bar, TensorBoard events in
W/tensorboard, and one JSON object per log step in W/metrics.jsonl (evaluations during training add rows whose
keys start with eval/). Only process 0 writes. A run resumed from step S first drops the rows and TensorBoard
events after S that an interrupted run wrote, so every step appears once."""

import datetime
import json
from typing import Any

from etils import epath
from tqdm import tqdm

from bert_jax import storage

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
