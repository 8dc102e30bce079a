"""Rotary position embeddings: plain, partial (first k head dims) and multimodal (M-RoPE).

All use the "rotate half" pairing (dim j with dim j + k/2) and fp32 angles, as PyTorch does.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def inverse_frequencies(rotary_dim: int, base: float) -> jax.Array:
  """inv_freq_k = base^(-2k / rotary_dim), k < rotary_dim / 2."""
  return 1.0 / (base ** (jnp.arange(0, rotary_dim, 2, dtype=jnp.float32) / rotary_dim))


def rotary_cos_sin(positions: jax.Array, inv_freq: jax.Array) -> tuple[jax.Array, jax.Array]:
  """cos/sin tables [..., N, rotary_dim] for integer or float positions [..., N]."""
  angles = positions.astype(jnp.float32)[..., None] * inv_freq
  angles = jnp.concatenate([angles, angles], axis=-1)
  return jnp.cos(angles), jnp.sin(angles)


def multimodal_cos_sin(position_ids: jax.Array, inv_freq: jax.Array,
                       sections: Sequence[int]) -> tuple[jax.Array, jax.Array]:
  """M-RoPE tables [B, N, 2·sum(sections)] from position rows [3, B, N] (time, height, width).

  The frequency index range is split into `sections`; section i takes its angles from position
  row i. The split applies to both halves of the duplicated table, as in Qwen2-VL.
  """
  if sum(sections) != inv_freq.shape[0]:
    raise ValueError(f"rope sections {tuple(sections)} must sum to {inv_freq.shape[0]}")
  cos, sin = rotary_cos_sin(position_ids, inv_freq)  # [3, B, N, 2F]
  bounds = list(sections) * 2
  starts = [sum(bounds[:i]) for i in range(len(bounds))]
  pick = lambda table: jnp.concatenate(
      [table[i % 3, ..., s:s + n] for i, (s, n) in enumerate(zip(starts, bounds))], axis=-1)
  return pick(cos), pick(sin)


def rotate_half(x: jax.Array) -> jax.Array:
  half = x.shape[-1] // 2
  return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates the first cos.shape[-1] dims of x [B, N, H, D]; the rest pass through.

  cos/sin are [N, R] or [B, N, R]; the rotation runs in fp32 and is cast back to x.dtype.
  """
  rot = cos.shape[-1]
  if cos.ndim == 2:
    cos, sin = cos[None], sin[None]
  cos, sin = cos[:, :, None, :], sin[:, :, None, :]
  xr = x[..., :rot].astype(jnp.float32)
  out = (xr * cos + rotate_half(xr) * sin).astype(x.dtype)
  if rot == x.shape[-1]:
    return out
  return jnp.concatenate([out, x[..., rot:]], axis=-1)
