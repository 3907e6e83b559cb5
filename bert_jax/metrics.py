"""Training logs: a console line per log step under a tqdm progress bar, TensorBoard events in
W/tensorboard, and one JSON object per log step in W/metrics.jsonl. Only process 0 writes."""

import datetime
import json
from typing import Any

from etils import epath
from tqdm import tqdm

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
    self.jsonl = (self.dir / "metrics.jsonl").open("a")
    self.tensorboard = SummaryWriter(str(self.dir / "tensorboard"))
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

  def info(self, line: str) -> None:
    if self.enabled:
      tqdm.write(line)

  def close(self) -> None:
    if self.enabled:
      self.bar.close()
      self.jsonl.close()
      self.tensorboard.close()
