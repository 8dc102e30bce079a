"""Validation loss on held-out records, comparable across steps and runs.

The loss is the rectified-flow MSE at a fixed grid of t (`train.eval_timesteps`) with fixed noise
(both the latent posterior draw and ε come from one constant key), on the same held-out examples
every time, with no CFG dropout and no mel masking. It therefore changes only when the weights
do, and two runs on the same data and config can be compared number for number. The batches are
built once with the training run's frozen stage, so they carry exactly the training features.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from aomni_jax import flow
from aomni_jax.config import Config
from aomni_jax.data import loader
from aomni_jax.layers.constraints import activation_sharding
from aomni_jax.models.conditioners import ConditionerInputs
from aomni_jax.train import lora
from aomni_jax.train.features import FrozenStage
from aomni_jax.train.frozen import sample_latents
from aomni_jax.train.state import StateSpec, TrainState

EVAL_SEED = 2024  # fixed: the validation noise must not depend on the run's seed


def eval_batches(config: Config, data_dir: str, stage: FrozenStage) -> list[dict[str, Any]]:
  """The first `train.eval_batches` batches of the held-out split (unshuffled), as step batches."""
  tc = config.train
  dataset = loader.make_dataset(
      data_dir, tc.batch_size // jax.process_count(), seed=0, num_epochs=1,
      shapes=loader.Shapes.for_model(config.model), split="eval",
      eval_fraction=tc.eval_fraction)
  batches = []
  for batch in dataset:
    batches.append(stage(batch))
    if len(batches) == tc.eval_batches:
      break
  return batches


def make_eval_fn(config: Config, spec: StateSpec, mesh):
  """(state, batch, key) → per-t losses [len(eval_timesteps)], jitted; the state is not donated."""
  grid = jnp.asarray(config.train.eval_timesteps, jnp.float32)

  def losses(state: TrainState, batch: dict[str, jax.Array], key: jax.Array) -> jax.Array:
    weights = lora.module_weights(state.ema_params, state.frozen, config.train)
    dit = nnx.merge(spec.graphdefs["dit"], weights["dit"], state.buffers["dit"])
    heads = nnx.merge(spec.graphdefs["heads"], weights["heads"], state.buffers["heads"])
    latent_key, noise_key = jax.random.split(key)
    with activation_sharding(mesh, config.mesh.rules):
      inputs = ConditionerInputs(**{f: batch[f] for f in ConditionerInputs._fields if f in batch})
      cond = heads(inputs)
      x0 = sample_latents(batch["latent_mean"], batch["latent_std"], latent_key)
      noise = jax.random.normal(noise_key, x0.shape, jnp.float32)

      def at(t):
        ts = jnp.full((x0.shape[0],), t)
        v = dit(flow.interpolate(x0, noise, ts), ts, *cond)
        return jnp.mean(jnp.square(v.astype(jnp.float32) - flow.velocity_target(x0, noise)))

      return jax.lax.map(at, grid)

  replicated = NamedSharding(mesh, PartitionSpec())
  return jax.jit(losses, out_shardings=replicated)


class Validator:
  """Evaluates the EMA weights on the fixed held-out batches."""

  def __init__(self, config: Config, spec: StateSpec, mesh, stage: FrozenStage, data_dir: str):
    self.config = config
    self.batches = eval_batches(config, data_dir, stage)
    if not self.batches:
      raise ValueError(f"{data_dir}: the held-out split (train.eval_fraction="
                       f"{config.train.eval_fraction}) has no full batch; raise the fraction")
    self._fn = make_eval_fn(config, spec, mesh)

  def __call__(self, state: TrainState) -> dict[str, float]:
    """{"eval/loss": mean over t and batches, "eval/loss_t0.50": per t, ...}."""
    per_t = np.mean([np.asarray(self._fn(state, batch, jax.random.fold_in(
        jax.random.PRNGKey(EVAL_SEED), i))) for i, batch in enumerate(self.batches)], axis=0)
    out = {"eval/loss": float(per_t.mean())}
    out.update({f"eval/loss_t{t:.2f}": float(v)
                for t, v in zip(self.config.train.eval_timesteps, per_t)})
    return out
