"""The training loop's checkpoint hook: a save every checkpoint.every steps, the eval metrics with it when the best
step is kept, and the save of a preempted step before the run stops."""

from collections.abc import Callable
from typing import Any

from bert_jax.checkpoint.manager import Checkpoints
from bert_jax.checkpoint.preemption import Preempted, Preemption
from bert_jax.errors import UserError


class Saver:
  """What the training loop calls: `due(step)` at every step (preemption; it also finishes a background save that
  is done, so a failed save stops the run), `save(step, state)` at checkpoint steps, after the last step and when
  preempted; it then waits for the commit and raises Preempted. `metrics_fn(step, params)` gives the eval metrics
  kept with a checkpoint (for checkpoint.best_metric)."""

  def __init__(self, checkpoints: Checkpoints, batches: Any, metrics_fn: Callable[[int, Any], dict] | None = None):
    self.checkpoints = checkpoints
    self.batches = batches
    self.metrics_fn = metrics_fn
    self.preemption = Preemption(checkpoints.manager)
    self.preempted_at: int | None = None

  def due(self, step: int) -> bool:
    self.checkpoints.poll()
    if self.preempted_at is None and self.preemption.reached(step):
      self.preempted_at = step
    return self.preempted_at == step

  def save(self, step: int, state: Any) -> None:
    best = self.checkpoints.config.checkpoint.best_metric
    metrics = self.metrics_fn(step, state.params) if self.metrics_fn and best else None
    if metrics is not None and best not in metrics:
      raise UserError(f"checkpoint.best_metric '{best}' is not an eval metric of this objective; use one of "
                      f"{', '.join(metrics)}")
    self.checkpoints.save(step, state, self.batches, metrics)
    if self.preempted_at == step:
      self.checkpoints.wait()
      raise Preempted(step, state, self.checkpoints.directory)

  def close(self) -> None:
    self.preemption.close()
