"""What the examples share: the tiny config, a stand-in batch, and a few steps of the real train
step (the same `train.step` that `aomni-train` runs) on one device."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from aomni_jax import parallel
from aomni_jax.config import Config, load_config
from aomni_jax.models.conditioners import ConditionerInputs
from aomni_jax.models.dit import DiTConditioning
from aomni_jax.train import features, state as state_lib, step as step_lib

TINY_CONFIG = pathlib.Path(__file__).resolve().parent.parent / "configs" / "tiny.py"


def tiny_config(overrides: Sequence[str] = ()) -> Config:
  """configs/tiny.py on a one-device mesh, with `--set`-style overrides."""
  config = load_config(str(TINY_CONFIG), list(overrides))
  return dataclasses.replace(config, mesh=dataclasses.replace(config.mesh, data=1, fsdp=1,
                                                              tensor=1))


def train_steps(config: Config, steps: int, batch_size: int = 2
                ) -> tuple[state_lib.TrainState, state_lib.StateSpec, list[float]]:
  """`steps` updates of the normal train step on one device (modules built by the registry from
  `config.model.modules`); returns the state, its spec and the losses."""
  config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                 batch_size=batch_size))
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:1])
  spec = state_lib.make_state_spec(config, mesh)
  state = state_lib.init_state(config, spec)
  shapes = features.step_batch_shapes(config, batch_size)
  train_step = step_lib.build_train_step(config, mesh, shapes, spec)
  losses = []
  for i in range(steps):
    batch = parallel.shard_batch(features.stand_in_step_batch(config, batch_size, seed=i),
                                 train_step.batch_shardings)
    state, metrics = train_step.fn(state, batch, jax.random.PRNGKey(0))
    losses.append(float(metrics["loss"]))
  return state, spec, losses


def trained_module(spec: state_lib.StateSpec, state: state_lib.TrainState,
                   name: str) -> nnx.Module:
  """The module `name` ("dit" or "heads") with the state's current (non-EMA) weights."""
  params, buffers = jax.device_get((state.params[name], state.buffers[name]))
  return nnx.merge(spec.graphdefs[name], params, buffers)


def stand_in_conditioning(config: Config, heads: nnx.Module, batch_size: int,
                          seed: int = 0) -> DiTConditioning:
  """The heads' DiT conditioning for a stand-in batch (inference mode: no infill masking)."""
  batch = features.stand_in_step_batch(config, batch_size, seed)
  return heads(ConditionerInputs(**{f: jnp.asarray(batch[f]) for f in ConditionerInputs._fields
                                    if f in batch}))


def stand_in_noise(config: Config, batch_size: int, seed: int = 0) -> jax.Array:
  m = config.model
  return jax.random.normal(jax.random.key(seed),
                           (batch_size, m.latent_length, m.dit.io_channels), jnp.float32)


def stand_in_weights(module: nnx.Module, seed: int = 0, scale: float = 0.05) -> nnx.Module:
  """Adds N(0, scale²) to every parameter in place: random stand-in weights whose zero-initialised
  residual branches are active (a fresh DiT's blocks are identities). Not a trained model."""
  params = nnx.state(module, nnx.Param)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  noisy = [p + scale * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
  nnx.update(module, jax.tree.unflatten(treedef, noisy))
  return module
