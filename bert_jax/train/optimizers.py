"""Optimizers and learning-rate schedules from config.optimizer, with the papers' recipes.

adamw (BERT, RoBERTa): decoupled weight decay, masked off biases and LayerNorm/RMSNorm scales.
lamb (ALBERT): layer-wise adaptive Adam, the same decay mask.
adafactor (T5): factored second moments over each kernel's 2-D (fan-in, fan-out) view, update clipping, the
parameter-scaled step from the schedule (rsqrt for T5).
Schedules: linear (warm-up from 0, then linear decay to min_lr_ratio x the peak at train.steps: 0 but for XLNet's
0.001), cosine (the same warm-up, then half a cosine down to min_lr_ratio x the peak: optax.cosine_decay_schedule),
rsqrt (the peak for warmup_steps, then peak * sqrt(warmup_steps / step): T5's 1/sqrt(max(step, 10^4)) at lr 0.01),
constant (after a linear warm-up).
optimizer.layer_decay < 1 scales each layer's updates as ELECTRA's fine-tuning does (scale_by_layer_depth).
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bert_jax.errors import UserError
from bert_jax.models import shared

OPTIMIZERS = ("adamw", "lamb", "adafactor")
SCHEDULES = ("linear", "cosine", "rsqrt", "constant")
NO_DECAY_NAMES = ("bias", "scale")


def learning_rate_schedule(config: Any) -> optax.Schedule:
  o, steps = config.optimizer, config.train.steps
  if o.schedule not in SCHEDULES:
    raise UserError(f"optimizer.schedule must be one of {', '.join(SCHEDULES)}, got '{o.schedule}'")
  if o.learning_rate <= 0 or o.warmup_steps < 0:
    raise UserError("optimizer.learning_rate must be positive and optimizer.warmup_steps non-negative")
  peak, warmup, end = float(o.learning_rate), int(o.warmup_steps), float(o.get("min_lr_ratio", 0.0))
  if not 0.0 <= end <= 1.0:
    raise UserError(f"optimizer.min_lr_ratio must be in [0, 1] (the decay's end over the peak), got {end}")
  if o.schedule == "rsqrt":
    floor = max(warmup, 1)
    return lambda step: peak * jnp.sqrt(floor / jnp.maximum(step, floor))
  warm = optax.linear_schedule(0.0, peak, warmup) if warmup else optax.constant_schedule(peak)
  decay_steps = max(steps - warmup, 1)
  after = {"linear": lambda: optax.linear_schedule(peak, peak * end, decay_steps),
           "cosine": lambda: optax.cosine_decay_schedule(peak, decay_steps, alpha=end),
           "constant": lambda: optax.constant_schedule(peak)}[o.schedule]()
  return optax.join_schedules([warm, after], [warmup])


def decay_mask(params: Any) -> Any:
  """True where weight decay applies: every parameter except biases and normalization scales."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: str(getattr(path[-1], "key", path[-1])) not in NO_DECAY_NAMES, params)


def make_optimizer(config: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
  o = config.optimizer
  if o.name == "adamw":
    optimizer = optax.adamw(schedule, o.b1, o.b2, o.eps, weight_decay=o.weight_decay, mask=decay_mask)
  elif o.name == "lamb":
    optimizer = optax.lamb(schedule, o.b1, o.b2, o.eps, weight_decay=o.weight_decay, mask=decay_mask)
  elif o.name == "adafactor":
    optimizer = adafactor(schedule, o.weight_decay)
  else:
    raise UserError(f"optimizer.name must be one of {', '.join(OPTIMIZERS)}, got '{o.name}'")
  decay = float(o.get("layer_decay", 1.0))
  if not 0.0 < decay <= 1.0:
    raise UserError(f"optimizer.layer_decay must be in (0, 1] (1 turns it off; ELECTRA fine-tunes with 0.8), got "
                    f"{decay}")
  if decay < 1.0:
    optimizer = optax.chain(optimizer, scale_by_layer_depth(decay, config.model.num_layers))
  clip = config.train.clip_norm
  if clip < 0:
    raise UserError(f"train.clip_norm must be >= 0 (0 turns clipping off), got {clip}")
  return optax.chain(optax.clip_by_global_norm(clip), optimizer) if clip else optimizer


def adafactor(schedule: optax.Schedule, weight_decay: float = 0.0) -> optax.GradientTransformation:
  """optax.adafactor's defaults (Mesh TensorFlow's AdafactorOptimizer: second-moment decay 1 - step^-0.8, factored
  for dims >= 128, update RMS clipped to 1, step times max(RMS(param), 1e-3), no momentum), built from optax's
  parts with two changes. The moments are factored over each kernel's 2-D view (matrix_view): Mesh TensorFlow
  stores attention's q/k/v/o with the heads and head dims combined, [d_model, heads * d_kv], which Adafactor
  factors; optax.adafactor sees our [hidden_size, heads, head_dim], keeps a full moment for it and takes pow(v, -0.5)
  per element. And the parameter scale is one RMS pass (optax's numerics.safe_root_mean_squares, written to be
  differentiated, reads each parameter twice through a full-size select)."""
  parts = [matrix_view(optax.scale_by_factored_rms()), optax.clip_by_block_rms(1.0),
           optax.scale_by_learning_rate(schedule, flip_sign=False), scale_by_parameter_rms(1e-3)]
  if weight_decay:
    parts.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
  return optax.chain(*parts, optax.scale(-1.0))


def matrix_shape(path: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
  """A parameter's 2-D (fan-in, fan-out) view: axes after a scanned stack's leading `layers` axis split where the
  two sides' sizes are closest ([768, 12, 64] -> [768, 768], [12, 64, 768] -> [768, 768]); up to 2-D unchanged."""
  lead = 1 if any(getattr(key, "key", None) == "layers" for key in path) else 0
  outer, core = shape[:lead], shape[lead:]
  if len(core) <= 2:
    return shape
  split = min(range(1, len(core)), key=lambda s: abs(np.log(np.prod(core[:s])) - np.log(np.prod(core[s:]))))
  return outer + (int(np.prod(core[:split])), int(np.prod(core[split:])))


def matrix_view(inner: optax.GradientTransformation) -> optax.GradientTransformation:
  """`inner` applied to each parameter (and its gradient) reshaped to matrix_shape; updates in the parameters'
  shapes, state in the views'."""
  def view(tree):
    return jax.tree_util.tree_map_with_path(lambda path, x: x.reshape(matrix_shape(path, x.shape)), tree)

  def update(updates, state, params=None):
    new, state = inner.update(view(updates), state, view(params))
    return jax.tree_util.tree_map(lambda u, g: u.reshape(g.shape), new, updates), state

  return optax.GradientTransformation(lambda params: inner.init(view(params)), update)


def scale_by_parameter_rms(minimum: float) -> optax.GradientTransformation:
  """Each update times max(RMS(its parameter), minimum): Adafactor's relative step size."""
  def update(updates, state, params=None):
    return jax.tree_util.tree_map(
        lambda u, p: u * jnp.maximum(jnp.sqrt(jnp.mean(jnp.square(p))), minimum).astype(u.dtype), updates,
        params), state

  return optax.GradientTransformation(optax.init_empty_state, update)


def scale_by_layer_depth(decay: float, num_layers: int) -> optax.GradientTransformation:
  """ELECTRA's layer-wise learning-rate decay: each update (its weight decay included) times
  decay ** (num_layers + 2 - depth), with models.shared.layer_depth's depths: the task head at the full rate, the
  layers below it at decay ** 2, decay ** 3, ..., the embeddings at decay ** (num_layers + 2)."""

  def scale(path, update):
    names = [str(getattr(key, "key", key)) for key in path]
    factor = np.float32(decay) ** (num_layers + 2 - np.asarray(shared.layer_depth(names, num_layers), np.float32))
    return update * factor.reshape(factor.shape + (1,) * (update.ndim - factor.ndim)).astype(update.dtype)

  return optax.stateless(lambda updates, params=None: jax.tree_util.tree_map_with_path(scale, updates))
