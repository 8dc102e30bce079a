"""The jitted training step: `(state, batch, key) -> (state, metrics)`.

One pure function: a posterior draw of the target latents (mean + std·ε from the batch),
conditioner heads → DiTConditioning → rectified-flow loss (configured t-sampler and CFG dropout)
→ gradients accumulated over micro-batches with `lax.scan` → optax update → EMA.
Master weights stay fp32; the modules compute in their configured dtype (bf16 at full size).
A non-finite loss or gradient discards the update (state unchanged except `step`) and is reported
in the metrics, so the host decides whether to stop or skip without the state being corrupted.

Importing this module has no side effects; `build_train_step` returns the jitted function and its
shardings, so the AOT tool can `.lower()` it with ShapeDtypeStructs.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from aomni_jax import flow, parallel
from aomni_jax.config import Config
from aomni_jax.layers.constraints import activation_sharding
from aomni_jax.train import lora, optim
from aomni_jax.train.features import step_batch_shapes
from aomni_jax.train.frozen import sample_latents
from aomni_jax.train.state import StateSpec, TrainState, make_state_spec



def conditioning(heads: nnx.Module, batch: dict[str, jax.Array], key: jax.Array):
  """The heads map the batch's frozen features (`ConditionerInputs` fields) to DiTConditioning;
  `key` drives their training-only randomness (the TTS infill mask of the mel path)."""
  from aomni_jax.models.conditioners import ConditionerInputs  # pylint: disable=g-import-not-at-top
  inputs = ConditionerInputs(**{f: batch[f] for f in ConditionerInputs._fields if f in batch})
  return heads(inputs, train=True, key=key)


def ema_decay(decay: float, step: jax.Array) -> jax.Array:
  """EMA decay warmed up as min(decay, (1 + step) / (10 + step)), so early EMA tracks params."""
  step = step.astype(jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


@dataclasses.dataclass(frozen=True)
class TrainStep:
  """The compiled-on-first-call step and what a caller needs to feed it."""

  fn: Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]
  config: Config
  spec: StateSpec
  batch_shardings: dict[str, NamedSharding]
  key_sharding: NamedSharding


def _micro_batches(batch: dict[str, jax.Array], steps: int, mesh: Mesh,
                   rules: tuple) -> dict[str, jax.Array]:
  """[B, ...] → [steps, B/steps, ...], taking rows with stride `steps` so that each micro-batch
  draws equally from every device's shard (no resharding)."""

  def split(x):
    b = x.shape[0]
    y = jnp.swapaxes(x.reshape((b // steps, steps) + x.shape[1:]), 0, 1)
    spec = parallel.batch_sharding(mesh, rules, y.ndim - 1, b // steps).spec
    return jax.lax.with_sharding_constraint(y, NamedSharding(mesh, PartitionSpec(None, *spec)))

  return jax.tree.map(split, batch)


def make_train_step_fn(config: Config, spec: StateSpec, mesh: Mesh) -> Callable:
  """The pure (un-jitted) step for this config; `build_train_step` wraps it in `jax.jit`."""
  train_cfg, flow_cfg = config.train, config.flow
  accum = train_cfg.grad_accum_steps
  schedule = optim.learning_rate_schedule(train_cfg)

  def loss_fn(params, frozen, buffers, micro, key):
    weights = lora.module_weights(params, frozen, train_cfg)
    dit = nnx.merge(spec.graphdefs["dit"], weights["dit"], buffers["dit"])
    heads = nnx.merge(spec.graphdefs["heads"], weights["heads"], buffers["heads"])
    heads_key, flow_key, latent_key = jax.random.split(key, 3)
    # Activations keep their batch sharding (see aomni_jax.layers.constraints).
    with activation_sharding(mesh, config.mesh.rules):
      cond = conditioning(heads, micro, heads_key)
      latents = sample_latents(micro["latent_mean"], micro["latent_std"], latent_key)
      loss, _ = flow.rectified_flow_loss(lambda x, t, c: dit(x, t, *c), latents, cond,
                                         flow_key, flow_cfg)
    return loss

  grad_fn = jax.value_and_grad(loss_fn)

  def step_fn(state: TrainState, batch: dict[str, jax.Array], key: jax.Array):
    step_key = jax.random.fold_in(key, state.step)
    if accum == 1:
      loss, grads = grad_fn(state.params, state.frozen, state.buffers, batch, step_key)
    else:
      micro = _micro_batches(batch, accum, mesh, config.mesh.rules)
      zeros = jax.tree.map(jnp.zeros_like, state.params)

      def accumulate(carry, xs):
        loss_sum, grad_sum = carry
        index, mb = xs
        loss, grads = grad_fn(state.params, state.frozen, state.buffers, mb,
                              jax.random.fold_in(step_key, index))
        return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

      (loss, grads), _ = jax.lax.scan(accumulate, (jnp.zeros((), jnp.float32), zeros),
                                      (jnp.arange(accum), micro))
      loss = loss / accum
      grads = jax.tree.map(lambda g: g / accum, grads)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = spec.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = ema_decay(train_cfg.ema_decay, state.step)
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p.astype(jnp.float32),
                       state.ema_params, params)
    keep_new = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_state = state.replace(step=state.step + 1, params=keep_new(params, state.params),
                              opt_state=keep_new(opt_state, state.opt_state),
                              ema_params=keep_new(ema, state.ema_params))
    metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": schedule(state.step),
               "nonfinite": (~finite).astype(jnp.int32), "step": state.step,
               **{f"grad_norm_{name}": optax.tree.norm(grads[name]) for name in grads}}
    return new_state, metrics

  return step_fn


def build_train_step(config: Config, mesh: Mesh, batch_shapes: dict[str, Any] | None = None,
                     spec: StateSpec | None = None) -> TrainStep:
  """The jitted step with explicit shardings; the state argument is donated.

  `batch_shapes`: the global batch (arrays or ShapeDtypeStructs with a leading batch axis);
  default `features.step_batch_shapes(config, config.train.batch_size)`. For AOT compilation:
  `step.fn.lower(step.spec.abstract, abstract_batch(step), abstract_key(step))`.
  """
  if batch_shapes is None:
    batch_shapes = step_batch_shapes(config, config.train.batch_size)
  spec = spec or make_state_spec(config, mesh)
  batch_shardings = parallel.batch_shardings(batch_shapes, mesh, config.mesh.rules)
  key_sharding = NamedSharding(mesh, PartitionSpec())
  metric_sharding = NamedSharding(mesh, PartitionSpec())
  fn = jax.jit(make_train_step_fn(config, spec, mesh),
               in_shardings=(spec.shardings, batch_shardings, key_sharding),
               out_shardings=(spec.shardings, metric_sharding), donate_argnums=(0,))
  return TrainStep(fn=fn, config=config, spec=spec, batch_shardings=batch_shardings,
                   key_sharding=key_sharding)


def abstract_batch(step: TrainStep, batch_shapes: dict[str, Any] | None = None) -> dict:
  """ShapeDtypeStructs (with shardings) of the step's batch, for `.lower()`."""
  if batch_shapes is None:
    batch_shapes = step_batch_shapes(step.config, step.config.train.batch_size)
  return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=step.batch_shardings[k])
          for k, v in batch_shapes.items()}


def abstract_key(step: TrainStep) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=step.key_sharding)
