"""Orbax checkpoints of a run in W/checkpoints/<step>/: `params`, `train_state` (step, optimizer state, rng) and
`data` (the input position of every process: the tf.data iterator, or the synthetic stream's step).

    checkpoints = Checkpoints(workdir, config)              # or read_only=True for evaluation
    state, batches = checkpoints.restore_or_init(trainer, workdir)
    checkpoints.save(step, state, batches, metrics)         # asynchronous: training goes on while it writes
    params = checkpoints.restore_params(step, trainer)      # any mesh: the target carries the shardings

A step directory appears only once every process has written it (Orbax renames it from a temporary name), and
old steps are deleted only after the next one is committed, so a crash at any moment leaves the last good
checkpoint. A damaged step (a missing or truncated file) is reported and moved to W/damaged_checkpoints when an
older one restores; a checkpoint of another model is an error, never skipped.
"""

import dataclasses
import json
import signal
import sys
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from bert_jax.errors import UserError
from bert_jax.train.batches import PipelineBatches
from bert_jax.train.state import TrainState

CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "damaged_checkpoints"
SYNTHETIC_POSITION = "synthetic.json"


def _process_prefix(index: int, count: int) -> str:
  return f"process_{index}-of-{count}"


class DataPositionHandler(ocp.CheckpointHandler):
  """Each process writes its own input position: a tf.train.Checkpoint of its iterator (process_I-of-N.*), or
  process 0 the synthetic stream's step. Saving is synchronous: the position is the one of the saved step."""

  def save(self, directory: epath.Path, args: "DataPositionSave") -> None:
    batches = args.batches
    if isinstance(batches, PipelineBatches):
      from bert_jax.data.tf_cpu import tf

      prefix = directory / _process_prefix(jax.process_index(), jax.process_count())
      tf.train.Checkpoint(iterator=batches.iterator).write(str(prefix))
    elif jax.process_index() == 0:
      (directory / SYNTHETIC_POSITION).write_text(json.dumps({"step": batches.step}))

  def restore(self, directory: epath.Path, args: "DataPositionRestore") -> None:
    batches = args.batches
    saved = sorted(p.name.removesuffix(".index") for p in directory.glob("process_*.index"))
    synthetic = directory / SYNTHETIC_POSITION
    if not isinstance(batches, PipelineBatches):
      if saved:
        raise UserError(f"{directory.parent} holds a tf.data position but data.source is synthetic; "
                        "train with the data.source it was saved with, or use a new --workdir")
      batches.step = json.loads(synthetic.read_text())["step"]
      return
    if synthetic.exists():
      raise UserError(f"{directory.parent} was written with data.source=synthetic; train with the data.source it "
                      "was saved with, or use a new --workdir")
    mine = _process_prefix(jax.process_index(), jax.process_count())
    counts = {name.rpartition("-of-")[2] for name in saved}
    if saved and str(jax.process_count()) not in counts:
      raise UserError(f"{directory.parent} holds the data positions of {' or '.join(sorted(counts))} processes, "
                      f"this run has {jax.process_count()}; resume with the same number of processes")
    from bert_jax.data.tf_cpu import tf

    # read() of a missing or truncated file raises, which marks the checkpoint damaged.
    tf.train.Checkpoint(iterator=batches.iterator).read(str(directory / mine)).assert_consumed()


@ocp.args.register_with_handler(DataPositionHandler, for_save=True)
@dataclasses.dataclass
class DataPositionSave(ocp.args.CheckpointArgs):
  batches: Any


@ocp.args.register_with_handler(DataPositionHandler, for_restore=True)
@dataclasses.dataclass
class DataPositionRestore(ocp.args.CheckpointArgs):
  batches: Any


class Preempted(Exception):
  """Raised after the checkpoint of a preempted run has been committed."""

  def __init__(self, step: int, state: TrainState, directory: epath.Path):
    super().__init__(f"stopped on SIGTERM after step {step}; its checkpoint is in {directory / str(step)}; "
                     "run the same command to resume")
    self.step, self.state = step, state


def report(line: str) -> None:
  if jax.process_index() == 0:
    print(f"bert-jax: {line}", file=sys.stderr, flush=True)


def higher_is_better(metric: str) -> bool:
  return "accuracy" in metric


def _options(checkpoint_config: Any, read_only: bool) -> ocp.CheckpointManagerOptions:
  """Keep the last `keep` steps, plus the best by `best_metric` when set (its metrics are written with every step,
  so a resumed run still knows them). A reader neither creates nor cleans up (a run may be writing) and never
  saves; Orbax's own read_only mode would only add warnings."""
  policies = ocp.checkpoint_managers
  latest = policies.LatestN(n=checkpoint_config.keep)
  metric = checkpoint_config.best_metric
  common = dict(create=not read_only, cleanup_tmp_directories=not read_only, enable_async_checkpointing=True)
  if not metric:
    return ocp.CheckpointManagerOptions(preservation_policy=latest, **common)

  def get_metric(metrics: dict) -> float:
    return metrics[metric]

  best = policies.BestN(get_metric_fn=get_metric, reverse=not higher_is_better(metric), n=1,
                        keep_checkpoints_without_metrics=False)
  return ocp.CheckpointManagerOptions(preservation_policy=policies.AnyPreservationPolicy([latest, best]),
                                      best_fn=get_metric, best_mode="max" if higher_is_better(metric) else "min",
                                      **common)


def _path_name(path: tuple) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _shapes(tree: Any) -> dict[str, tuple]:
  return {_path_name(path): tuple(leaf.shape) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def short_error(error: Exception) -> str:
  lines = str(error).strip().splitlines()
  return f"{type(error).__name__}: {lines[0][:160] if lines else ''}"


def _train_state_tree(state: TrainState) -> dict:
  return {"step": state.step, "opt_state": state.opt_state, "rng": state.rng}


class Checkpoints:
  """The Orbax CheckpointManager of a workdir, with the restore rules above."""

  def __init__(self, workdir: str | epath.Path, config: Any, read_only: bool = False):
    self.workdir = epath.Path(workdir)
    self.directory = self.workdir / CHECKPOINT_DIR
    self.config = config
    keep, every = config.checkpoint.keep, config.checkpoint.every
    if not isinstance(keep, int) or keep < 1:
      raise UserError(f"checkpoint.keep must be a positive integer, got {keep!r}")
    if not isinstance(every, int) or every < 0:
      raise UserError(f"checkpoint.every must be >= 0 (0: only at the end and on SIGTERM), got {every!r}")
    for unfinished in sorted(self.directory.glob(f"*{ocp.step.TMP_DIR_SUFFIX}*")):
      report(f"ignoring {unfinished}: a save that is not committed" if read_only else
             f"ignoring {unfinished}: a save that never finished; removing it")
    options = _options(config.checkpoint, read_only)
    handlers = {"params": ocp.StandardCheckpointHandler(), "train_state": ocp.StandardCheckpointHandler(),
                "data": DataPositionHandler()}
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: TrainState, batches: Any, metrics: dict | None = None) -> bool:
    """Starts writing `step` (all processes call it); returns False when that step exists already."""
    if step in self.manager.all_steps():
      return False
    args = ocp.args.Composite(params=ocp.args.StandardSave(state.params),
                              train_state=ocp.args.StandardSave(_train_state_tree(state)),
                              data=DataPositionSave(batches))
    return self.manager.save(step, args=args, metrics=metrics, force=True)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()

  def _check_model(self, step: int, item: str, wanted: Any) -> None:
    """A UserError when the saved tree has other names or shapes than this config's; any failure to read the
    metadata propagates (a damaged checkpoint)."""
    metadata = self.manager.item_metadata(step)[item]
    if metadata is None:
      raise FileNotFoundError(f"{self.directory / str(step) / item} has no metadata")
    saved, expected = _shapes(metadata.tree), _shapes(wanted)
    where = f"checkpoint {step} in {self.directory}"
    fix = "use the config it was trained with, or a new --workdir"
    if item == "params":
      for name in sorted(saved.keys() | expected.keys()):
        if name not in expected:
          raise UserError(f"{where} holds a different model: it has parameter {name}, which this config lacks; {fix}")
        if name not in saved:
          raise UserError(f"{where} holds a different model: parameter {name} is missing from it; {fix}")
        if saved[name] != expected[name]:
          raise UserError(f"{where} holds a different model: parameter {name} has shape {saved[name]} there and "
                          f"{expected[name]} in this config; {fix}")
    elif sorted(saved.values()) != sorted(expected.values()):
      raise UserError(f"{where} holds another optimizer state than this config makes (was optimizer.name "
                      f"changed?); {fix}")

  def restore(self, step: int, trainer: Any, batches: Any) -> TrainState:
    """The full train state of `step` on the trainer's mesh; `batches` continues from the saved position."""
    abstract = trainer.abstract_state()
    self._check_model(step, "params", abstract.params)
    self._check_model(step, "train_state", _train_state_tree(abstract))
    restored = self.manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract.params),
        train_state=ocp.args.StandardRestore(_train_state_tree(abstract)),
        data=DataPositionRestore(batches)))
    rest = restored["train_state"]
    return TrainState(step=rest["step"], params=restored["params"], opt_state=rest["opt_state"], rng=rest["rng"])

  def restore_params(self, step: int, trainer: Any) -> Any:
    """Only the parameters of `step`, placed on the trainer's mesh (for evaluation and export)."""
    if step not in self.manager.all_steps():
      shown = ", ".join(map(str, self.steps())) or "none"
      raise UserError(f"no checkpoint of step {step} in {self.directory}; it has: {shown}")
    target = trainer.abstract_state().params
    self._check_model(step, "params", target)
    return self.manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target)))["params"]

  def _set_aside(self, step: int) -> None:
    """Moves a damaged step out of the manager's directory, so the step can be written again."""
    if jax.process_index() == 0:
      target = self.workdir / DAMAGED_DIR / str(step)
      suffix = 1
      while target.exists():
        target, suffix = self.workdir / DAMAGED_DIR / f"{step}.{suffix}", suffix + 1
      target.parent.mkdir(parents=True, exist_ok=True)
      (self.directory / str(step)).rename(target)
      report(f"moved the damaged checkpoint {step} to {target}")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"bert_jax_set_aside_{step}")
    self.manager.reload()

  def restore_or_init(self, trainer: Any, workdir: str | epath.Path) -> tuple[TrainState, Any]:
    """The state and batches of the newest checkpoint that restores, or fresh ones when there is none."""
    damaged = []
    for step in reversed(self.steps()):
      batches = trainer.batches(str(workdir), step)
      try:
        state = self.restore(step, trainer, batches)
      except UserError:
        raise
      except Exception as error:  # any failure to read a step means its files are damaged
        report(f"checkpoint {step} in {self.directory} is damaged ({short_error(error)})")
        damaged.append((step, error))
        continue
      for bad, _ in damaged:
        self._set_aside(bad)
      report(f"resuming from checkpoint {step} in {self.directory}")
      return state, batches
    if damaged:
      listed = "; ".join(f"step {step}: {short_error(error)}" for step, error in damaged)
      raise UserError(f"no checkpoint in {self.directory} could be restored ({listed}); move them away to start "
                      "afresh")
    return trainer.init_state(), trainer.batches(str(workdir), 0)


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


class Saver:
  """What the training loop calls: `due(step)` at every step (preemption), `save(step, state)` at checkpoint
  steps, after the last step and when preempted; it then waits for the commit and raises Preempted."""

  def __init__(self, checkpoints: Checkpoints, batches: Any, metrics_fn: Callable[[Any], dict] | None = None):
    self.checkpoints = checkpoints
    self.batches = batches
    self.metrics_fn = metrics_fn
    self.preemption = Preemption(checkpoints.manager)
    self.preempted_at = None

  def due(self, step: int) -> bool:
    if self.preempted_at is None and self.preemption.reached(step):
      self.preempted_at = step
    return self.preempted_at == step

  def save(self, step: int, state: TrainState) -> None:
    metrics = self.metrics_fn(state.params) if self.metrics_fn else None
    best = self.checkpoints.config.checkpoint.best_metric
    if metrics is not None and best not in metrics:
      raise UserError(f"checkpoint.best_metric '{best}' is not an eval metric of this objective; use one of "
                      f"{', '.join(metrics)}")
    self.checkpoints.save(step, state, self.batches, metrics)
    if self.preempted_at == step:
      self.checkpoints.wait()
      raise Preempted(step, state, self.checkpoints.directory)

  def close(self) -> None:
    self.preemption.close()
    self.checkpoints.close()
