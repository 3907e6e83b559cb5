"""A run's stop on SIGTERM: every process learns of it at the same step, saves it, and stops once it is committed."""

import signal
from typing import Any

from etils import epath
import jax
import orbax.checkpoint as ocp


class Preempted(Exception):
  """Raised after the checkpoint of a preempted run has been committed."""

  def __init__(self, step: int, state: Any, directory: epath.Path):
    super().__init__(f"stopped on SIGTERM after step {step}; its checkpoint is in {directory / str(step)}; "
                     "run the same command to resume")
    self.step, self.state = step, state


class Preemption:
  """Whether a run must save and stop: SIGTERM in a single process (our handler); on several processes JAX's
  preemption service catches the signal and agrees on one step for all of them (Orbax's reached_preemption),
  which every process must ask at every step."""

  def __init__(self, manager: ocp.CheckpointManager):
    self.manager = manager
    self.signalled = False
    self.previous = None
    if jax.process_count() == 1:
      self.previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum, frame) -> None:
    self.signalled = True

  def reached(self, step: int) -> bool:
    return self.manager.reached_preemption(step) or self.signalled

  def close(self) -> None:
    if self.previous is not None:
      signal.signal(signal.SIGTERM, self.previous)
      self.previous = None
