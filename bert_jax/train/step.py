"""The train and eval steps: pure functions of (state, batch), jitted with explicit shardings.

Loss = sum_t sums[t] / counts[t] with counts over the whole global batch, so summing the losses and
gradients of microbatches (lax.scan) gives exactly the gradient of the whole batch.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import optax

from bert_jax.objectives import forward_with_memory, training_loss
from bert_jax.train.state import TrainState


def split_microbatches(batch: dict, microbatches: int) -> dict:
  """[B, ...] -> [M, B/M, ...]; microbatch m takes rows m, m+M, ..., so each keeps every device busy."""
  def split(x_B):
    x_NM = x_B.reshape((x_B.shape[0] // microbatches, microbatches) + x_B.shape[1:])
    x_MN = jnp.swapaxes(x_NM, 0, 1)
    return nn.with_logical_constraint(x_MN, (None, "batch") + (None,) * (x_B.ndim - 1))
  return jax.tree_util.tree_map(split, batch)


def join_microbatches(x_MN: jax.Array) -> jax.Array:
  """The inverse of split_microbatches for one array: [M, B/M, ...] -> [B, ...]."""
  x_NM = jnp.swapaxes(x_MN, 0, 1)
  return x_NM.reshape((-1,) + x_NM.shape[2:])


def make_train_step(model: nn.Module, objective: Any, optimizer: optax.GradientTransformation,
                    microbatches: int) -> Callable[[TrainState, dict, Any], tuple[TrainState, dict]]:
  """The step of (state, batch, frozen): `frozen` holds the parameters the objective reads but does not train
  (bert_jax/train/frozen.py), None for most objectives."""

  def train_step(state: TrainState, batch: dict, frozen: Any = None) -> tuple[TrainState, dict]:
    counts = objective.counts(batch)
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def loss_fn(params, inputs, key):
      sums, metrics, memory = forward_with_memory(objective, model, params, inputs["batch"], inputs["memory"],
                                                  {"dropout": key}, frozen)
      return training_loss(sums, counts), (sums, metrics, memory)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def outputs(inputs, key):
      (loss, (sums, metrics, memory)), grads = grad_fn(state.params, inputs, key)
      return (loss, sums, metrics, grads), memory

    inputs = {"batch": batch, "memory": state.memory}  # the memory's rows are the batch's rows
    if microbatches == 1:
      (loss, sums, metrics, grads), memory = outputs(inputs, step_key)
    else:
      def accumulate(total, xs):
        micro, index = xs
        summed, memory = outputs(micro, jax.random.fold_in(step_key, index))
        return jax.tree_util.tree_map(jnp.add, total, summed), memory

      micro_inputs = split_microbatches(inputs, microbatches)
      first = jax.tree_util.tree_map(lambda x: x[0], micro_inputs)
      zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(outputs, first, step_key)[0])
      (loss, sums, metrics, grads), memories = jax.lax.scan(
          accumulate, zeros, (micro_inputs, jnp.arange(microbatches)))
      memory = jax.tree_util.tree_map(join_microbatches, memories)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                              opt_state=opt_state, memory=memory)
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads), "sums": sums, "metrics": metrics,
                       "counts": counts}

  return train_step


def make_eval_step(model: nn.Module, objective: Any) -> Callable[[Any, dict, Any, Any], tuple[dict, Any]]:
  """Deterministic forward pass: the sums, metrics and counts that objective.summarize turns into numbers, and
  the memory for the next eval batch (None when the objective carries none); `frozen` as in the train step."""

  def eval_step(params: Any, batch: dict, memory: Any, frozen: Any = None) -> tuple[dict, Any]:
    sums, metrics, memory = forward_with_memory(objective, model, params, batch, memory, frozen=frozen)
    return {"sums": sums, "metrics": metrics, "counts": objective.counts(batch)}, memory

  return eval_step


def jit_train_step(train_step: Callable, state_shardings: TrainState, batch_shardings: dict,
                   frozen_shardings: Any = None) -> jax.stages.Wrapped:
  replicated = NamedSharding(next(iter(batch_shardings.values())).mesh, PartitionSpec())
  return jax.jit(train_step, in_shardings=(state_shardings, batch_shardings, frozen_shardings),
                 out_shardings=(state_shardings, replicated), donate_argnums=0)


def jit_eval_step(eval_step: Callable, param_shardings: Any, batch_shardings: dict,
                  memory_sharding: NamedSharding | None = None, frozen_shardings: Any = None) -> Callable:
  replicated = NamedSharding(next(iter(batch_shardings.values())).mesh, PartitionSpec())
  return jax.jit(eval_step, in_shardings=(param_shardings, batch_shardings, memory_sharding, frozen_shardings),
                 out_shardings=(replicated, memory_sharding))
