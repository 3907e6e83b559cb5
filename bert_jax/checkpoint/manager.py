"""Orbax checkpoints of a run in W/checkpoints/<step>/: `params`, `train_state` (step, optimizer state, rng) and
`data` (the input position of every process: the tf.data iterator, or the synthetic stream's step).

    checkpoints = Checkpoints(workdir, config)              # or read_only=True for evaluation
    state, batches = checkpoints.restore_or_init(trainer, workdir)
    checkpoints.save(step, state, batches, metrics)         # asynchronous: training goes on while it writes
    params = checkpoints.restore_params(step, trainer)      # any mesh: the target carries the shardings

A step directory appears only once every process has written it (Orbax renames it from a temporary name), and
old steps are deleted only after the next one is committed, so a crash at any moment leaves the last good
checkpoint. A save runs in the background; the loop asks at every step whether it has finished, and a save that
failed stops the run with one line (the step, the path, the cause). Once committed, process 0 adds the size and
SHA-256 of every file (MANIFEST), so a restore finds a missing, truncated or corrupt file before reading it. Such a
damaged step is reported and moved to W/damaged_checkpoints when an older one restores; any other failure to restore
is an error, and a checkpoint of another model is an error, never skipped.
"""

from collections.abc import Callable
import dataclasses
import sys
from typing import Any

from etils import epath
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from bert_jax.checkpoint.integrity import Damaged, is_damage, short_error, verify, write_manifest
from bert_jax.errors import RunError, UserError, is_disk_full

CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "damaged_checkpoints"


class DataPositionHandler(ocp.CheckpointHandler):
  """Each process writes its own input position through the batch source (`save_position`/`restore_position`).
  Saving is synchronous: the position is the one of the saved step."""

  def save(self, directory: epath.Path, args: "DataPositionSave") -> None:
    args.batches.save_position(directory)

  def restore(self, directory: epath.Path, args: "DataPositionRestore") -> None:
    args.batches.restore_position(directory)


@ocp.args.register_with_handler(DataPositionHandler, for_save=True)
@dataclasses.dataclass
class DataPositionSave(ocp.args.CheckpointArgs):
  batches: Any


@ocp.args.register_with_handler(DataPositionHandler, for_restore=True)
@dataclasses.dataclass
class DataPositionRestore(ocp.args.CheckpointArgs):
  batches: Any


def report(line: str) -> None:
  if jax.process_index() == 0:
    print(f"bert-jax: {line}", file=sys.stderr, flush=True)


def higher_is_better(metric: str) -> bool:
  """Accuracies, F1, correlations and exact match rise; losses, perplexities and squared errors fall."""
  return not any(word in metric for word in ("loss", "perplexity", "mse"))


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


def _shapes(tree: Any) -> dict[str, tuple]:
  return {jax.tree_util.keystr(path, simple=True, separator="/"): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _train_state_tree(state: Any) -> dict:
  tree = {"step": state.step, "opt_state": state.opt_state, "rng": state.rng}
  return tree if state.memory is None else {**tree, "memory": state.memory}


class Checkpoints:
  """The Orbax CheckpointManager of a workdir, with the save checks and restore rules above."""

  def __init__(self, workdir: str | epath.Path, config: Any, read_only: bool = False):
    self.workdir = epath.Path(workdir)
    if not self.workdir.is_absolute():
      raise ValueError(f"Checkpoints needs an absolute workdir (resolve it at the command line), got {workdir}")
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
    self.pending: int | None = None  # the step being written in the background

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def _failed(self, step: int, error: BaseException) -> RunError:
    committed = [s for s in self.steps() if s != step]
    kept = f"the last committed checkpoint is {committed[-1]}" if committed else "no checkpoint was committed"
    cause = "no space left on device" if is_disk_full(error) else short_error(error)
    return RunError(f"checkpoint {step} could not be written to {self.directory / str(step)} ({cause}); training "
                    f"stopped; {kept}; fix the cause and run the same command to resume")

  def poll(self, block: bool = False) -> None:
    """Finishes the background save once it is done (or, with `block`, waits for it): a failure raises RunError,
    a success gets its manifest."""
    if self.pending is None or (not block and self.manager.is_saving_in_progress()):
      return
    step, self.pending = self.pending, None
    try:
      self.manager.wait_until_finished()
    except Exception as error:
      raise self._failed(step, error) from error
    if step not in self.manager.all_steps():
      raise self._failed(step, RuntimeError("the save was not committed"))
    if jax.process_index() == 0:
      try:
        write_manifest(self.directory / str(step))
      except OSError as error:
        raise self._failed(step, error) from error

  def save(self, step: int, state: Any, batches: Any, metrics: dict | None = None) -> bool:
    """Starts writing `step` (all processes call it) once the previous save is committed; returns False when that
    step exists already."""
    self.poll(block=True)
    if step in self.manager.all_steps():
      return False
    args = ocp.args.Composite(params=ocp.args.StandardSave(state.params),
                              train_state=ocp.args.StandardSave(_train_state_tree(state)),
                              data=DataPositionSave(batches))
    try:
      started = self.manager.save(step, args=args, metrics=metrics, force=True)
    except Exception as error:
      raise self._failed(step, error) from error
    self.pending = step if started else None
    return started

  def wait(self) -> None:
    self.poll(block=True)

  def close(self) -> None:
    try:
      self.poll(block=True)
    finally:
      self.manager.close()

  def _check_model(self, step: int, item: str, wanted: Any) -> None:
    """A UserError when the saved tree has other names or shapes than this config's; a failure to read the
    metadata propagates."""
    metadata = self.manager.item_metadata(step)[item]
    if metadata is None:
      raise Damaged(f"{self.directory / str(step) / item} has no metadata")
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
      raise UserError(f"{where} holds another optimizer state or batch memory than this config makes (was "
                      f"optimizer.name, train.batch_size or model.mem_len changed?); {fix}")

  def _restoring(self, step: int, items: tuple[str, ...], restore: Callable[[], Any]) -> Any:
    """restore() after the step's checksums pass; a missing, truncated or corrupt file raises Damaged, a
    checkpoint of another model UserError, and anything else propagates as it is."""
    try:
      verify(self.directory / str(step), items)
      return restore()
    except (Damaged, UserError):
      raise
    except Exception as error:
      if is_damage(error):
        raise Damaged(short_error(error)) from error
      raise

  def restore(self, step: int, trainer: Any, batches: Any) -> Any:
    """The full train state of `step` on the trainer's mesh; `batches` continues from the saved position."""
    abstract = trainer.abstract_state()

    def read() -> Any:
      self._check_model(step, "params", abstract.params)
      self._check_model(step, "train_state", _train_state_tree(abstract))
      return self.manager.restore(step, args=ocp.args.Composite(
          params=ocp.args.StandardRestore(abstract.params),
          train_state=ocp.args.StandardRestore(_train_state_tree(abstract)),
          data=DataPositionRestore(batches)))

    restored = self._restoring(step, (), read)
    rest = restored["train_state"]
    return abstract.replace(step=rest["step"], params=restored["params"], opt_state=rest["opt_state"],
                            rng=rest["rng"], memory=rest.get("memory"))

  def restore_params(self, step: int, trainer: Any) -> Any:
    """Only the parameters of `step`, placed on the trainer's mesh (for evaluation and export)."""
    if step not in self.manager.all_steps():
      shown = ", ".join(map(str, self.steps())) or "none"
      raise UserError(f"no checkpoint of step {step} in {self.directory}; it has: {shown}")
    target = trainer.abstract_state().params

    def read() -> Any:
      self._check_model(step, "params", target)
      return self.manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target)))["params"]

    return self._restoring(step, ("params",), read)

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

  def restore_or_init(self, trainer: Any, workdir: str | epath.Path, init: str | None = None) -> tuple[Any, Any]:
    """The state and batches of the newest checkpoint that restores, or fresh ones when there is none (with the
    parameters of checkpoint `init` when given; a run that resumes ignores it)."""
    damaged = []
    for step in reversed(self.steps()):
      batches = trainer.batches(str(workdir), step)
      try:
        state = self.restore(step, trainer, batches)
      except Damaged as error:
        report(f"checkpoint {step} in {self.directory} is damaged ({error})")
        damaged.append((step, error))
        continue
      for bad, _ in damaged:
        self._set_aside(bad)
      report(f"resuming from checkpoint {step} in {self.directory}")
      if init is not None:
        report(f"ignoring --init {init}: the run resumes from its own checkpoint")
      return state, batches
    if damaged:
      listed = "; ".join(f"step {step}: {error}" for step, error in damaged)
      raise UserError(f"no checkpoint in {self.directory} could be restored ({listed}); move them away to start "
                      "afresh")
    if init is not None:
      report(f"starting from the parameters in {init}")
    return trainer.init_state(init), trainer.batches(str(workdir), 0)
