"""Metrics of parameters on a run's fixed held-out batches, shared by training (eval.every, checkpoint.best_metric)
and `bert-jax evaluate`: config.eval.batches batches of the held-out split (the same masks every time), the
objective's summarize() metrics, W/eval/<step>.json and TensorBoard scalars eval/<metric>.

Synthetic data (data.source=synthetic) evaluates on the synthetic stream's steps from SYNTHETIC_EVAL_STEP on,
which training never reaches. An objective with `eval_extras(model, params, batch, tokenizer)` (T5's greedy
decodes) adds readable samples of the first eval batch to the JSON file.
"""

from collections.abc import Iterator
import json
from typing import Any

from etils import epath
import jax
from jax.experimental import multihost_utils
import numpy as np

from bert_jax import parallel
from bert_jax.train import batches as batches_lib

SYNTHETIC_EVAL_STEP = 2 ** 40
EVAL_DIR = "eval"


class Evaluator:
  """Metrics of parameters on the run's fixed eval batches (made once, on the trainer's mesh)."""

  def __init__(self, trainer: Any, workdir: str | epath.Path):
    self.trainer = trainer
    self.workdir = epath.Path(workdir)
    self._batches: list[dict] | None = None
    self._tokenizer = None

  @property
  def batches(self) -> list[dict]:
    if self._batches is None:
      self._batches = list(self._make_batches())
    return self._batches

  def _make_batches(self) -> Iterator[dict]:
    config, trainer = self.trainer.config, self.trainer
    size = config.eval.batch_size
    parallel.check_batch(size, trainer.mesh, trainer.rules, "eval.batch_size")
    shardings = trainer.shardings_for_batch(size)
    if config.data.source == "synthetic":
      synthetic = batches_lib.SyntheticBatches(trainer.objective, size, config.seed, shardings, SYNTHETIC_EVAL_STEP)
      for _ in range(config.eval.batches):
        yield next(synthetic)
      return
    from bert_jax.data import pipeline

    batches = pipeline.eval_dataset(config, trainer.objective, self.workdir, jax.process_index(), jax.process_count())
    for batch in batches:
      yield batches_lib.to_global({name: tensor.numpy() for name, tensor in batch.items()}, shardings, size)

  def __call__(self, params: Any) -> dict:
    if hasattr(self.trainer.objective, "task"):
      return self.task_metrics(params)
    totals, memory = None, self.trainer.zero_memory(self.trainer.config.eval.batch_size)
    for batch in self.batches:
      outputs, memory = self.trainer.eval_step(params, batch, memory)
      outputs = jax.device_get(outputs)
      outputs = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), outputs)
      totals = outputs if totals is None else jax.tree_util.tree_map(np.add, totals, outputs)
    assert totals is not None, "the eval split gave no batch"
    return self.trainer.objective.summarize(totals["sums"], totals["metrics"], totals["counts"])

  @property
  def tokenizer(self) -> Any:
    if self._tokenizer is None:
      self._tokenizer = batches_lib.task_tokenizer(self.trainer.config)
    return self._tokenizer

  def task_metrics(self, params: Any) -> dict:
    """A fine-tuning task's metrics on each of its eval splits (the first split's unprefixed, the others' prefixed
    with the split's name: MNLI's dev_mismatched_accuracy)."""
    objective, record = self.trainer.objective, {}
    for k, split in enumerate(objective.task.eval_splits):
      found = objective.score(split, self.task_outputs(params, split), self.tokenizer)
      record.update({(f"{split}_{name}" if k else name): value for name, value in found.items()})
    return record

  def task_outputs(self, params: Any, split: str) -> dict:
    """The objective's outputs for every example of a task split, in order (rows that fill the last eval batch
    dropped); every process gets them all."""
    trainer, size = self.trainer, self.trainer.config.eval.batch_size
    arrays = trainer.objective.arrays(split, self.tokenizer)
    n = len(arrays["weight"])
    parallel.check_batch(size, trainer.mesh, trainer.rules, "eval.batch_size")
    shardings = trainer.shardings_for_batch(size)
    rows = parallel.local_rows(next(iter(shardings.values())), size)
    collected = []
    for start in range(0, n, size):
      chunk = {name: x[start:start + size] for name, x in arrays.items()}
      missing = size - len(chunk["weight"])
      chunk = {name: np.concatenate([x, np.zeros((missing,) + x.shape[1:], x.dtype)]) for name, x in chunk.items()}
      batch = batches_lib.to_global({name: x[rows] for name, x in chunk.items()}, shardings, size)
      collected.append(multihost_utils.process_allgather(trainer.outputs_step(params, batch), tiled=True))
    return {name: np.concatenate([c[name] for c in collected])[:n] for name in collected[0]}

  def extras(self, params: Any) -> Any:
    """The objective's readable samples of the first eval batch, or None when it has none."""
    objective = self.trainer.objective
    if not hasattr(objective, "eval_extras") or hasattr(objective, "task"):
      return None
    tokenizer = None
    if self.trainer.config.data.source != "synthetic":
      from bert_jax.data import pipeline

      tokenizer = pipeline.load_tokenizer(self.trainer.config, self.workdir)
    with self.trainer.context():
      return objective.eval_extras(self.trainer.eval_model, params, self.batches[0], tokenizer)


def write_results(workdir: str | epath.Path, record: dict, extras: Any = None, tensorboard: bool = True) -> epath.Path:
  """W/eval/<step>.json (written whole, then renamed) and, with `tensorboard`, its scalars; only process 0 writes."""
  path = epath.Path(workdir) / EVAL_DIR / f"{record['step']}.json"
  if jax.process_index() != 0:
    return path
  path.parent.mkdir(parents=True, exist_ok=True)
  partial = path.with_name(path.name + ".partial")
  partial.write_text(json.dumps(record if extras is None else {**record, "samples": extras}, indent=1) + "\n")
  partial.replace(path)
  if tensorboard:
    from tensorboardX import SummaryWriter

    with SummaryWriter(str(epath.Path(workdir) / "tensorboard")) as writer:
      for key, value in record.items():
        if key != "step":
          writer.add_scalar(f"eval/{key}", value, record["step"])
  return path


class Evaluations:
  """Evaluation during training: at eval.every steps and for checkpoint.best_metric, each step evaluated once,
  written to W/eval/<step>.json, metrics.jsonl (keys eval/...) and TensorBoard (eval/...)."""

  def __init__(self, evaluator: Evaluator, writer: Any):
    self.evaluator, self.writer = evaluator, writer
    self.last: tuple[int, dict] | None = None

  def at(self, step: int, params: Any) -> dict:
    if self.last is None or self.last[0] != step:
      record = {"step": step, **self.evaluator(params)}
      write_results(self.evaluator.workdir, record, self.evaluator.extras(params), tensorboard=False)
      self.writer.write_eval(record)
      self.last = (step, record)
    return {k: v for k, v in self.last[1].items() if k != "step"}

  def hook(self, step: int, state: Any) -> None:
    self.at(step, state.params)
