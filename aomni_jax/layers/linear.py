"""Dense layers whose parameters carry logical axis names.

Kernels are stored `[in, out]` (Flax convention); converters transpose PyTorch `[out, in]` weights.
The logical names are resolved to mesh axes only in `aomni_jax.parallel`, never here.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]


def make_param(rngs: nnx.Rngs, init: Initializer, shape: tuple[int, ...],
               axes: tuple[str | None, ...], dtype: jnp.dtype) -> nnx.Param:
  """A Param with logical axes; sharding is applied later by jit out_shardings, not eagerly."""
  if len(axes) != len(shape):
    raise ValueError(f"axes {axes} do not match shape {shape}")
  return nnx.Param(init(rngs.params(), shape, dtype), out_sharding=axes, eager_sharding=False)


class Buffer(nnx.Variable):
  """A persistent, non-trainable tensor (PyTorch `register_buffer`); never differentiated."""


def lecun_normal() -> Initializer:
  return jax.nn.initializers.lecun_normal()


class Dense(nnx.Module):
  """y = x @ kernel (+ bias), computed in `dtype` with parameters kept in `param_dtype`."""

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs,
               axes: tuple[str | None, str | None] = ("embed", "mlp"), use_bias: bool = True,
               dtype: jnp.dtype = jnp.float32, param_dtype: jnp.dtype = jnp.float32,
               kernel_init: Initializer | None = None,
               bias_init: Initializer = jax.nn.initializers.zeros):
    self.in_features = in_features
    self.out_features = out_features
    self.dtype = dtype
    self.kernel = make_param(rngs, kernel_init or lecun_normal(), (in_features, out_features),
                             axes, param_dtype)
    self.bias = (make_param(rngs, bias_init, (out_features,), (axes[1],), param_dtype)
                 if use_bias else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class FusedDense(nnx.Module):
  """`parts` projections in one matmul (fused qkv, [value | gate]): kernel [in, parts, out].

  The part axis is its own (unsharded) dimension, so splitting `out` over `tensor` gives every
  device whole heads (or whole MLP columns) of *each* part. A flat [in, parts · out] kernel split
  contiguously would hand one device all of q and another all of v, and every step would
  re-gather them. Returns [..., parts, out].
  """

  def __init__(self, in_features: int, parts: int, out_features: int, *, rngs: nnx.Rngs,
               axes: tuple[str | None, str | None] = ("embed", "mlp"), use_bias: bool = True,
               dtype: jnp.dtype = jnp.float32, param_dtype: jnp.dtype = jnp.float32,
               kernel_init: Initializer | None = None,
               bias_init: Initializer = jax.nn.initializers.zeros):
    self.dtype = dtype
    # Initialised as the flat [in, parts · out] matrix (same fan-in/out as the unfused layer).
    flat_init = kernel_init or lecun_normal()
    init = lambda key, shape, dtype: flat_init(key, (shape[0], shape[1] * shape[2]),
                                               dtype).reshape(shape)
    self.kernel = make_param(rngs, init, (in_features, parts, out_features),
                             (axes[0], None, axes[1]), param_dtype)
    self.bias = (make_param(rngs, bias_init, (parts, out_features), (None, axes[1]), param_dtype)
                 if use_bias else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jnp.einsum("...i,ipo->...po", x.astype(self.dtype), self.kernel[...].astype(self.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y
