"""Feed-forward blocks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from aomni_jax.layers.linear import Dense, FusedDense


class FusedSwiGLU(nnx.Module):
  """Linear(d → 2·inner) split into [value | gate], value · SiLU(gate), then Linear(inner → d).

  The fused input projection and the value-first order follow the official DiT FeedForward
  (`ff.ff.0.proj`, `ff.ff.2`), both with biases; the input kernel is stored [d, 2, inner] so
  that tensor parallelism splits value and gate alike (see `FusedDense`).
  """

  def __init__(self, dim: int, inner_dim: int, *, rngs: nnx.Rngs, dtype: jnp.dtype,
               param_dtype: jnp.dtype, zero_init_out: bool = True):
    self.proj_in = FusedDense(dim, 2, inner_dim, rngs=rngs, axes=("embed", "mlp"), dtype=dtype,
                              param_dtype=param_dtype)
    out_init = jax.nn.initializers.zeros if zero_init_out else None
    self.proj_out = Dense(inner_dim, dim, rngs=rngs, axes=("mlp", "embed"), dtype=dtype,
                          param_dtype=param_dtype, kernel_init=out_init)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.proj_in(x)
    value, gate = h[..., 0, :], h[..., 1, :]
    return self.proj_out(value * jax.nn.silu(gate))
