"""A run's checkpoints: Orbax steps in W/checkpoints (manager), their SHA-256 manifests and the test for damage
(integrity), the stop on SIGTERM (preemption), and the training loop's save hook (saver). The names below are what
the rest of the package uses."""

from bert_jax.checkpoint.integrity import MANIFEST, Damaged
from bert_jax.checkpoint.manager import CHECKPOINT_DIR, DAMAGED_DIR, Checkpoints, higher_is_better, report
from bert_jax.checkpoint.preemption import Preempted
from bert_jax.checkpoint.saver import Saver

__all__ = ["CHECKPOINT_DIR", "DAMAGED_DIR", "MANIFEST", "Checkpoints", "Damaged", "Preempted", "Saver",
           "higher_is_better", "report"]
