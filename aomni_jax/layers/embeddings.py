"""Timestep and position features."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def fourier_features(t: jax.Array, weight: jax.Array) -> jax.Array:
  """[cos(2π t Wᵀ), sin(2π t Wᵀ)] for t [B] and a learned W [F/2, 1] → [B, F].

  t is used raw in [0, 1] (no ×1000), as the official FourierFeatures does.
  """
  f = 2.0 * math.pi * t.astype(jnp.float32)[:, None] * weight.astype(jnp.float32)[:, 0][None, :]
  return jnp.concatenate([jnp.cos(f), jnp.sin(f)], axis=-1)


def sinusoidal_table(dim: int, length: int, theta: float = 10000.0) -> jax.Array:
  """Row p = [cos(p·ω_k) for k < dim/2, sin(p·ω_k) for k < dim/2], ω_k = theta^(-2k/dim)."""
  freqs = 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32)[: dim // 2] / dim))
  angles = jnp.arange(length, dtype=jnp.float32)[:, None] * freqs[None, :]
  return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)
