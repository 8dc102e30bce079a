"""The thinker's Qwen2.5-VL vision transformer (patch embed, 2-D rotary, window attention, merger).

Patches stay in the processor's natural order (per temporal grid, 2×2 merge blocks row-major,
the 4 patches of a block consecutive). Attention is block-diagonal over *groups* computed on the
host: windows of `merger_window²` merged tokens tiled from each frame's top-left corner (edge
windows smaller) for window blocks, and one temporal grid per group for the "full" blocks. The
groups are gathered into a padded [G, L] batch, attended with a key mask and scattered back.
This equals HF's permute → cu_seqlens → un-permute exactly, as the only order-dependent step
(the 4-patch merger) sees natural order in both.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.layers.attention import dot_product_attention
from aomni_jax.layers.linear import make_param
from aomni_jax.layers.norms import rms_norm
from aomni_jax.layers.rotary import apply_rotary, inverse_frequencies
from aomni_jax.models.qwen_omni.config import ThinkerConfig, VisionConfig

_normal = jax.nn.initializers.normal(0.02)
_zeros = jax.nn.initializers.zeros
_ones = jax.nn.initializers.ones
_RMS_EPS = 1e-6


class Groups(NamedTuple):
  """Attention groups: patch indices [G, L] (padding slots valid=False) and the inverse map."""

  index: jax.Array
  valid: jax.Array
  inverse: jax.Array  # [N]: flat slot (g·L + l) of every patch


class VisionInputs(NamedTuple):
  """Processor rows [N, C·T·p·p], patch (row, col) in its frame [N, 2], and both groupings."""

  pixels: jax.Array
  patch_hw: jax.Array
  windows: Groups
  frames: Groups


def _groups(members: list[np.ndarray], total: int) -> Groups:
  width = max(len(m) for m in members)
  index = np.zeros((len(members), width), np.int32)
  valid = np.zeros((len(members), width), bool)
  inverse = np.zeros((total,), np.int32)
  for g, m in enumerate(members):
    index[g, :len(m)] = m
    valid[g, :len(m)] = True
    inverse[m] = g * width + np.arange(len(m))
  return Groups(index, valid, inverse)


def vision_inputs(pixels: np.ndarray, grid_thw: np.ndarray, cfg: VisionConfig) -> VisionInputs:
  """Host layout for the patches of all images (or videos) of one call."""
  grid_thw = np.asarray(grid_thw, np.int64).reshape(-1, 3)
  m, unit, win = cfg.spatial_merge_size, cfg.merge_unit, cfg.merger_window
  total = int(np.prod(grid_thw, axis=1).sum())
  if pixels.shape != (total, cfg.patch_dim):
    raise ValueError(f"pixel rows {pixels.shape} do not match grid_thw {grid_thw.tolist()}: "
                     f"expected ({total}, {cfg.patch_dim})")
  hw, windows, frames = [], [], []
  offset = 0
  for t, h, w in grid_thw.tolist():
    if h % m or w % m:
      raise ValueError(f"grid {h}x{w} is not divisible by spatial_merge_size {m}")
    gh, gw = h // m, w // m
    # Patch order inside a frame: merge blocks row-major, then the m×m patches of a block.
    rows = np.arange(gh)[:, None, None, None] * m + np.arange(m)[None, None, :, None]
    cols = np.arange(gw)[None, :, None, None] * m + np.arange(m)[None, None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    frame_hw = np.stack([rows.reshape(-1), cols.reshape(-1)], axis=-1)
    block = np.arange(gh * gw).reshape(gh, gw)
    for ti in range(t):
      base = offset + ti * h * w
      hw.append(frame_hw)
      frames.append(base + np.arange(h * w))
      for r in range(0, gh, win):
        for c in range(0, gw, win):
          merged = block[r:r + win, c:c + win].reshape(-1)
          windows.append(base + (merged[:, None] * unit + np.arange(unit)[None]).reshape(-1))
    offset += t * h * w
  return VisionInputs(np.asarray(pixels, np.float32), np.concatenate(hw).astype(np.int32),
                      _groups(windows, total), _groups(frames, total))


def _runs(depth: int, full: tuple[int, ...]) -> list[tuple[int, int, bool]]:
  """Maximal runs [start, end) of blocks sharing one attention kind (True = full)."""
  runs = []
  for i in range(depth):
    kind = i in full
    if runs and runs[-1][2] == kind:
      runs[-1] = (runs[-1][0], i + 1, kind)
    else:
      runs.append((i, i + 1, kind))
  return runs


class VisionEncoder(nnx.Module):
  """patch embed → blocks (window / full attention) → 2×2 patch merger."""

  def __init__(self, cfg: ThinkerConfig, *, rngs: nnx.Rngs):
    v, dt = cfg.vision, cfg.weight_dtype
    d, n, i = v.hidden_size, v.depth, v.intermediate_size
    self.cfg = cfg
    self.patch_kernel = make_param(rngs, _normal, (v.patch_dim, d), ("channels", "embed"), dt)

    def stacked(init, shape, axes):
      return make_param(rngs, init, (n, *shape), ("layers", *axes), dt)

    self.blocks = nnx.data({
        "norm1": stacked(_ones, (d,), ("norm",)),
        "q_kernel": stacked(_normal, (d, d), ("embed", "heads")),
        "q_bias": stacked(_zeros, (d,), ("heads",)),
        "k_kernel": stacked(_normal, (d, d), ("embed", "heads")),
        "k_bias": stacked(_zeros, (d,), ("heads",)),
        "v_kernel": stacked(_normal, (d, d), ("embed", "heads")),
        "v_bias": stacked(_zeros, (d,), ("heads",)),
        "o_kernel": stacked(_normal, (d, d), ("heads", "embed")),
        "o_bias": stacked(_zeros, (d,), ("embed",)),
        "norm2": stacked(_ones, (d,), ("norm",)),
        "gate_kernel": stacked(_normal, (d, i), ("embed", "mlp")),
        "gate_bias": stacked(_zeros, (i,), ("mlp",)),
        "up_kernel": stacked(_normal, (d, i), ("embed", "mlp")),
        "up_bias": stacked(_zeros, (i,), ("mlp",)),
        "down_kernel": stacked(_normal, (i, d), ("mlp", "embed")),
        "down_bias": stacked(_zeros, (d,), ("embed",)),
    })
    wide = d * v.merge_unit
    self.merger_norm = make_param(rngs, _ones, (d,), ("norm",), dt)
    self.merger_fc1_kernel = make_param(rngs, _normal, (wide, wide), ("embed", "mlp"), dt)
    self.merger_fc1_bias = make_param(rngs, _zeros, (wide,), ("mlp",), dt)
    self.merger_fc2_kernel = make_param(rngs, _normal, (wide, v.out_hidden_size),
                                        ("mlp", "embed"), dt)
    self.merger_fc2_bias = make_param(rngs, _zeros, (v.out_hidden_size,), ("embed",), dt)

  def rotary(self, patch_hw: jax.Array) -> tuple[jax.Array, jax.Array]:
    """2-D rotary tables [N, head_dim]: angles [h·f, w·f] with head_dim/4 frequencies, twice."""
    v = self.cfg.vision
    inv_freq = inverse_frequencies(v.head_dim // 2, v.rope_theta)
    angles = patch_hw.astype(jnp.float32)[:, :, None] * inv_freq  # [N, 2, head_dim/4]
    angles = angles.reshape(angles.shape[0], -1)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)

  def __call__(self, inputs: VisionInputs) -> jax.Array:
    """Merged tokens [N/merge_unit, out_hidden_size] in natural order."""
    v, dt = self.cfg.vision, self.cfg.compute_dtype
    x = jnp.dot(inputs.pixels.astype(dt), self.patch_kernel[...].astype(dt))
    cos, sin = self.rotary(inputs.patch_hw)
    params = {name: var[...] for name, var in self.blocks.items()}
    for start, end, full in _runs(v.depth, v.fullatt_block_indexes):
      groups = inputs.frames if full else inputs.windows

      def body(h, p, groups=groups):
        return _block(self.cfg, p, h, cos, sin, groups), None

      x, _ = jax.lax.scan(body, x, {k: a[start:end] for k, a in params.items()})
    x = rms_norm(x, self.merger_norm[...], _RMS_EPS).reshape(-1, v.hidden_size * v.merge_unit)
    x = jnp.dot(x.astype(dt), self.merger_fc1_kernel[...].astype(dt))
    x = jax.nn.gelu(x + self.merger_fc1_bias[...].astype(dt), approximate=False)
    x = jnp.dot(x, self.merger_fc2_kernel[...].astype(dt))
    return x + self.merger_fc2_bias[...].astype(dt)


def _block(cfg: ThinkerConfig, p: dict[str, jax.Array], x: jax.Array, cos: jax.Array,
           sin: jax.Array, groups: Groups) -> jax.Array:
  v, dt = cfg.vision, cfg.compute_dtype
  n, d = x.shape

  def dense(y, name):
    return jnp.dot(y.astype(dt), p[name + "_kernel"].astype(dt)) + p[name + "_bias"].astype(dt)

  h = rms_norm(x, p["norm1"], _RMS_EPS)
  q, k, val = (dense(h, name).reshape(1, n, v.num_heads, v.head_dim) for name in "qkv")
  q, k = apply_rotary(q, cos, sin)[0], apply_rotary(k, cos, sin)[0]
  g, width = groups.index.shape
  gather = lambda t: t[groups.index]  # [G, L, heads, head_dim]
  out = dot_product_attention(gather(q), gather(k), gather(val[0]), key_mask=groups.valid,
                              backend=cfg.attention)
  out = out.reshape(g * width, d)[groups.inverse]
  x = x + dense(out, "o").astype(x.dtype)
  h = rms_norm(x, p["norm2"], _RMS_EPS)
  h = dense(jax.nn.silu(dense(h, "gate")) * dense(h, "up"), "down")
  return x + h.astype(x.dtype)
