"""Rectified flow (official conventions): t = 0 is data, t = 1 is noise, target v = ε − x₀.

x_t = (1 − t)·x₀ + t·ε, and the network regresses v with a mean squared error. Pure functions:
the train step composes them with the model.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from aomni_jax.config import FlowConfig
from aomni_jax.models.dit import DiTConditioning

VelocityFn = Callable[[jax.Array, jax.Array, DiTConditioning], jax.Array]


def sample_t(key: jax.Array, batch: int, cfg: FlowConfig) -> jax.Array:
  """Training times: uniform U(0,1) (the paper) or logit-normal sigmoid(N(μ, σ))."""
  if cfg.t_sampler == "uniform":
    return jax.random.uniform(key, (batch,), jnp.float32)
  if cfg.t_sampler == "logit_normal":
    z = cfg.logit_normal_mean + cfg.logit_normal_std * jax.random.normal(key, (batch,))
    return jax.nn.sigmoid(z).astype(jnp.float32)
  raise ValueError(f"unknown t sampler {cfg.t_sampler!r}")


def interpolate(x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
  """x_t = (1 − t)·x₀ + t·ε, t broadcast over every non-batch axis."""
  t = t.reshape((-1,) + (1,) * (x0.ndim - 1))
  return (1.0 - t) * x0 + t * noise


def velocity_target(x0: jax.Array, noise: jax.Array) -> jax.Array:
  return noise - x0


def cfg_dropout(key: jax.Array, cond: DiTConditioning, prob: float) -> DiTConditioning:
  """Zeroes each sample's cross-attention tokens with probability `prob`; keeps the mask.

  Low-level (prepended) tokens are never dropped, as in the official DiT forward.
  """
  if cond.cross_cond is None or prob <= 0.0:
    return cond
  keep = jax.random.uniform(key, (cond.cross_cond.shape[0],)) >= prob
  dropped = jnp.where(keep[:, None, None], cond.cross_cond, jnp.zeros_like(cond.cross_cond))
  return cond._replace(cross_cond=dropped)


def rectified_flow_loss(velocity: VelocityFn, x0: jax.Array, cond: DiTConditioning,
                        key: jax.Array, cfg: FlowConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
  """MSE(v̂(x_t, t), ε − x₀), averaged over every element; returns (loss, aux metrics)."""
  k_t, k_noise, k_drop = jax.random.split(key, 3)
  t = sample_t(k_t, x0.shape[0], cfg)
  noise = jax.random.normal(k_noise, x0.shape, jnp.float32)
  x_t = interpolate(x0.astype(jnp.float32), noise, t)
  cond = cfg_dropout(k_drop, cond, cfg.cfg_dropout_prob)
  v_hat = velocity(x_t, t, cond).astype(jnp.float32)
  per_sample = jnp.mean(jnp.square(v_hat - velocity_target(x0, noise)),
                        axis=tuple(range(1, x0.ndim)))
  return jnp.mean(per_sample), {"t": t, "per_sample_loss": per_sample}
