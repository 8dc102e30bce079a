"""Normalisations, computed in float32 whatever the activation dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from aomni_jax.layers.linear import Buffer, make_param


def layer_norm(x: jax.Array, scale: jax.Array | None, bias: jax.Array | None,
               eps: float) -> jax.Array:
  """LayerNorm over the last axis (PyTorch semantics: biased variance, eps inside the sqrt)."""
  xf = x.astype(jnp.float32)
  mean = jnp.mean(xf, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
  y = (xf - mean) * jax.lax.rsqrt(var + eps)
  if scale is not None:
    y = y * scale.astype(jnp.float32)
  if bias is not None:
    y = y + bias.astype(jnp.float32)
  return y.astype(x.dtype)


def rms_norm(x: jax.Array, scale: jax.Array | None = None, eps: float = 1e-6) -> jax.Array:
  """x · rsqrt(mean(x²) + eps) (· scale). An all-zero row stays exactly zero."""
  xf = x.astype(jnp.float32)
  y = xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + eps)
  if scale is not None:
    y = y * scale.astype(jnp.float32)
  return y.astype(x.dtype)


class LayerNorm(nnx.Module):
  """LayerNorm with a learned scale and an optional bias.

  `bias="buffer"` reproduces the official DiT LayerNorm: `gamma` is learned while `beta` is a
  persistent buffer (zeros in real checkpoints, random in the golden fixtures), so it is loaded
  but never trained.
  """

  def __init__(self, dim: int, *, rngs: nnx.Rngs, eps: float = 1e-5, bias: str = "param",
               param_dtype: jnp.dtype = jnp.float32, axis_name: str = "norm"):
    if bias not in ("param", "buffer", "none"):
      raise ValueError(f"bias must be param, buffer or none, got {bias!r}")
    self.eps = eps
    self.scale = make_param(rngs, jax.nn.initializers.ones, (dim,), (axis_name,), param_dtype)
    if bias == "param":
      self.bias = make_param(rngs, jax.nn.initializers.zeros, (dim,), (axis_name,), param_dtype)
    elif bias == "buffer":
      self.bias = Buffer(jnp.zeros((dim,), param_dtype), out_sharding=(axis_name,),
                         eager_sharding=False)
    else:
      self.bias = None

  def __call__(self, x: jax.Array) -> jax.Array:
    return layer_norm(x, self.scale[...], None if self.bias is None else self.bias[...], self.eps)


class RMSNorm(nnx.Module):
  """RMSNorm with a learned scale (Qwen style)."""

  def __init__(self, dim: int, *, rngs: nnx.Rngs, eps: float = 1e-6,
               param_dtype: jnp.dtype = jnp.float32, axis_name: str = "norm"):
    self.eps = eps
    self.scale = make_param(rngs, jax.nn.initializers.ones, (dim,), (axis_name,), param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    return rms_norm(x, self.scale[...], self.eps)
