"""What a run compiles against: the mesh, the sharding rules, the model, the objective, the optimizer and the
shardings of the state and the batches; the state's creation (fresh, or from imported parameters), the compiled
train, eval and outputs steps, and the stepping itself.

    trainer = Trainer(config)                   # mesh, rules, model, optimizer, shardings; checks inputs
    state = trainer.init_state()                # or restore into trainer.abstract_state()
    batches = trainer.batches(workdir, start)   # .step (synthetic) or .iterator (tf.data) is its state
    state, records = trainer.run(state, batches, writer, hooks)   # hooks: e.g. save every N steps

A hook runs only after every step up to its own has been checked finite, so it never sees a broken state.
"""

from collections.abc import Callable, Iterator, Sequence
import contextlib
import ctypes
import dataclasses
from typing import Any, cast

from flax import traverse_util
import flax.linen as nn
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np

from bert_jax import checkpoint, convert, models, parallel, params as params_lib
from bert_jax.convert import weights as convert_files
from bert_jax.errors import UserError
from bert_jax.objectives import carries_memory, get_objective
from bert_jax.objectives.protocol import TaskObjective
from bert_jax.train import (
  batches as batches_lib,
  frozen as frozen_lib,
  optimizers,
  state as state_lib,
  step as step_lib,
)
from bert_jax.train.metrics_writer import MetricsWriter, StepLogger
from bert_jax.train.state import TrainState


@dataclasses.dataclass
class Hook:
  """Calls fn(step, state) every `every` steps, after the last step, and at any step where `when(step)` (asked at
  every step) is true."""
  every: int
  fn: Callable[[int, TrainState], None]
  when: Callable[[int], bool] | None = None

  def due(self, step: int, last_step: int) -> bool:
    asked = self.when is not None and self.when(step)
    return asked or step == last_step or (self.every > 0 and step % self.every == 0)


def release_freed_host_memory() -> None:
  """Hands the heap pages freed since the last call (a compilation's working memory) back to the system, so that
  the first step's buffers are not counted on top of them: BERT-base's peak host memory on a CPU falls by about
  0.2 GB. glibc's malloc_trim; nothing where there is none."""
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):
    pass


class Trainer:

  def __init__(self, config: Any, devices: Sequence[Any] | None = None):
    self.config = config
    self.objective = get_objective(config)
    self.mesh = parallel.make_mesh(config.mesh, devices)
    self.rules = parallel.logical_rules(config)
    train = config.train
    parallel.check_batch(train.batch_size, self.mesh, self.rules, "train.batch_size")
    parallel.check_batch(train.batch_size // train.microbatches, self.mesh, self.rules,
                         "train.batch_size / train.microbatches")
    self.model = models.build_model(config.model, deterministic=False)
    self.eval_model = models.build_model(config.model, deterministic=True)
    boxed = state_lib.boxed_abstract_params(self.model, config.model)
    self.abstract_params = nn.meta.unbox(boxed)
    parallel.check_divisible(self.abstract_params, state_lib.logical_param_specs(boxed), self.mesh, self.rules)
    self.param_shardings = state_lib.param_shardings(boxed, self.mesh, self.rules)
    self.schedule = optimizers.learning_rate_schedule(config)
    self.host_schedule = jax.jit(self.schedule)  # one compile, not one per jnp op at every log step
    self.optimizer = optimizers.make_optimizer(config, self.schedule)
    self.batch_shardings = self.shardings_for_batch(train.batch_size)
    self.memory_spec = self.memory_spec_for_batch(train.batch_size)
    self.state_shardings = state_lib.state_shardings(self.abstract_params, self.param_shardings, self.optimizer,
                                                     self.mesh, self.memory_sharding())
    self.frozen = frozen_lib.make(self.objective, self.mesh, self.rules)  # what the objective reads, not trains
    self._train_step = step_lib.jit_train_step(
        step_lib.make_train_step(self.model, self.objective, self.optimizer, train.microbatches),
        self.state_shardings, self.batch_shardings, self.frozen and self.frozen.shardings)
    self._init = state_lib.make_init(self.model, config.model, self.optimizer, config.seed, self.state_shardings,
                                     self.memory_spec)
    self._eval_step: Callable | None = None
    self._outputs_step: Callable | None = None
    self._compiled_train_step: jax.stages.Compiled | None = None

  def shardings_for_batch(self, batch_size: int) -> dict:
    return {name: parallel.batch_sharding(self.mesh, self.rules, len(shape))
            for name, (shape, _) in self.objective.feature_spec(batch_size).items()}

  def memory_spec_for_batch(self, batch_size: int) -> tuple | None:
    """(shape, dtype) of the memory the objective carries between batches of batch_size rows; None if none."""
    return self.objective.memory_spec(batch_size) if carries_memory(self.objective) else None

  def memory_sharding(self):
    """The memory's rows are sharded as the batch's rows are."""
    return parallel.batch_sharding(self.mesh, self.rules, 4) if self.memory_spec else None

  def zero_memory(self, batch_size: int):
    """The memory an evaluation starts from (zeros, as at the start of training); None without memory."""
    spec = self.memory_spec_for_batch(batch_size)
    return None if spec is None else jax.jit(lambda: jnp.zeros(*spec), out_shardings=self.memory_sharding())()

  @contextlib.contextmanager
  def context(self) -> Iterator[None]:
    """The mesh and logical rules that activation constraints inside the model resolve against."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      yield

  def init_state(self, init: str | None = None) -> TrainState:
    """Outside self.context(): the out_shardings place the parameters, activation constraints play no part. With
    `init` (an Orbax parameter checkpoint: what `convert --from-hf` writes, or a run's step), its parameters
    replace the random ones and the optimizer state is made fresh for them. Without `init`, an objective that reads
    frozen parameters may start the model from them (distillation: the student from its teacher)."""
    state = self._init()
    if init is not None:
      params = self.imported_params(init, fresh=state.params)
    elif (start := frozen_lib.initial_params(self.objective, self.frozen)) is not None:
      params = self.placed(start, "the objective's start from its frozen parameters")
    else:
      return state
    opt_state = jax.jit(self.optimizer.init, out_shardings=self.state_shardings.opt_state)(params)
    return state.replace(params=params, opt_state=opt_state)

  def imported_params(self, path: str, fresh: Any = None) -> Any:
    """The parameters of checkpoint `path` in this run's layout (scanned or not), checked against its model and
    placed on its mesh (each process reads the file and keeps its shards). A task model (model.head other than
    pretraining) takes every parameter of the checkpoint it shares by name and shape, and the rest (its new head)
    from `fresh`."""
    module = models.family(self.config.model)
    cfg = module.make_config(self.config.model)
    tree = convert_files.restore_params(path)
    if cfg.head != "pretraining":
      tree = self._with_fresh_head(tree, fresh, path)
    return self.placed(tree, f"--init {path}")

  def placed(self, tree: dict, source: str) -> Any:
    """A host parameter tree (either layout) of this run's model on its mesh; `source` names it in the error."""
    module = models.family(self.config.model)
    cfg = module.make_config(self.config.model)
    tree = module.to_layout(tree, cfg, scanned=cfg.scan_layers)
    try:
      convert.check_params(self.config.model, tree)
    except UserError as error:
      raise UserError(f"{source} holds another model than this config ({error}); pass the config written "
                      "with it (OUT/config.py of `convert --from-hf`)") from None
    return frozen_lib.place(tree, jax.tree_util.tree_map(
        lambda spec, sharding: jax.ShapeDtypeStruct(spec.shape, spec.dtype, sharding=sharding),
        self.abstract_params, self.param_shardings))

  def _with_fresh_head(self, tree: dict, fresh: Any, path: str) -> dict:
    """The task model's parameters (unscanned layout): those of `tree`, a pretraining (or another task's) checkpoint,
    where name and shape match, the others from `fresh` (this run's random initialization)."""
    module = models.family(self.config.model)
    cfg = module.make_config(self.config.model)
    tree = module.to_layout(tree, dataclasses.replace(cfg, head="pretraining"), scanned=False)
    fresh = jax.tree_util.tree_map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), fresh)
    wanted = traverse_util.flatten_dict(module.to_layout(fresh, cfg, scanned=False), sep="/")
    given = traverse_util.flatten_dict(tree, sep="/")
    taken = {k: given[k] if k in given and np.shape(given[k]) == v.shape else v for k, v in wanted.items()}
    new = sorted(k for k in wanted if taken[k] is wanted[k])
    left = sorted(set(given) - set(wanted))
    checkpoint.report(f"{len(wanted) - len(new)} of the task model's {len(wanted)} parameter arrays from {path}; "
                      f"new: {_summary(new)}; left out: {_summary(left)}")
    return traverse_util.unflatten_dict(taken, sep="/")

  def abstract_state(self) -> TrainState:
    return state_lib.abstract_state(self.abstract_params, self.optimizer, self.state_shardings, self.memory_spec)

  def batches(self, workdir: str, start_step: int = 0):
    return batches_lib.make_batches(self.config, workdir, self.objective, self.batch_shardings, start_step)

  def train_step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    with self.context():
      frozen = self.frozen and self.frozen.params()
      if self._compiled_train_step is None:  # compiled before it first runs, so the compiler's heap is let go first
        self._compiled_train_step = self._train_step.lower(state, batch, frozen).compile()
        release_freed_host_memory()
      return self._compiled_train_step(state, batch, frozen)

  def eval_step(self, params: Any, batch: dict, memory: Any = None) -> tuple[dict, Any]:
    """Sums, metrics and counts of one global eval batch (config.eval.batch_size rows), and the memory for the
    next one (None when the objective carries none; start from zero_memory)."""
    if self._eval_step is None:
      size = self.config.eval.batch_size
      parallel.check_batch(size, self.mesh, self.rules, "eval.batch_size")
      self._eval_step = step_lib.jit_eval_step(step_lib.make_eval_step(self.eval_model, self.objective),
                                               self.param_shardings, self.shardings_for_batch(size),
                                               self.memory_sharding(), self.frozen and self.frozen.shardings)
    with self.context():
      return self._eval_step(params, batch, memory, self.frozen and self.frozen.params())

  def outputs_step(self, params: Any, batch: dict) -> dict:
    """A task objective's per-row outputs of one global eval batch (config.eval.batch_size rows)."""
    if self._outputs_step is None:
      objective = cast(TaskObjective, self.objective)  # only a task objective's evaluation asks for outputs
      self._outputs_step = jax.jit(lambda params, batch: objective.outputs(self.eval_model, params, batch),
                                   in_shardings=(self.param_shardings,
                                                 self.shardings_for_batch(self.config.eval.batch_size)))
    with self.context():
      return self._outputs_step(params, batch)

  def describe(self) -> str:
    n = params_lib.count(self.abstract_params)
    frozen = f" (+ {self.frozen.count:,} frozen: {self.frozen.model_config.family})" if self.frozen else ""
    shape = " x ".join(f"{axis}={size}" for axis, size in self.mesh.shape.items())
    return (f"{self.config.model.family}: {n:,} parameters{frozen} | mesh {shape} | {jax.process_count()} process(es), "
            f"{jax.device_count()} {jax.devices()[0].device_kind} device(s)")

  def run(self, state: TrainState, batches: Iterator[dict], writer: MetricsWriter,
          hooks: Sequence[Hook] = ()) -> tuple[TrainState, list[dict]]:
    """Steps from state.step to config.train.steps; returns the final state and the logged records."""
    total, log_every = self.config.train.steps, self.config.train.log_every
    logger = StepLogger(self, writer, int(state.step))
    for step in range(int(state.step) + 1, total + 1):
      state, outputs = self.train_step(state, next(batches))
      logger.add(step, outputs)
      due = [hook for hook in hooks if hook.due(step, total)]
      if step % log_every == 0 or step == total or due:
        logger.flush()
      for hook in due:
        hook.fn(step, state)
    return state, logger.records


def _summary(paths: list[str]) -> str:
  """Parameter paths grouped by their first two names: 'classifier (2), encoder/pooler (2)'."""
  groups: dict[str, int] = {}
  for path in paths:
    group = "/".join(path.split("/")[:2])
    groups[group] = groups.get(group, 0) + 1
  return ", ".join(f"{g} ({n})" for g, n in groups.items()) or "none"
