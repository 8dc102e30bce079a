"""Synchformer's visual branch (MotionFormer ViT-B/16, divided space–time attention), frozen.

It turns 25 fps video into the `sync_feature` stream (official_spec §3.4), as MMAudio's
`FeaturesUtils.encode_video_with_sync` does:
  frames [B, T, H, W, 3] in [−1, 1] → 16-frame windows with stride 8 → per window: tubelet
  embedding (2×p×p) → + spatial table tiled over time + temporal table → CLS + 12 blocks of
  (time attention, space attention, MLP) → drop CLS → LayerNorm → per time step a norm-first
  Transformer layer with its own CLS over the h·w patches, keeping only that CLS → 8 tokens.
  Output [B, S·8, D].

Layout is channels-last (frames [.., H, W, 3]); the converter maps PyTorch's [C, T, H, W] kernels.
The spatial aggregation only needs its CLS row, so only that row gets queries, the output
projection and the feed-forward: exact, and it drops that layer's cost to the K/V projection.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from aomni_jax.config import SynchformerConfig
from aomni_jax.layers.attention import dot_product_attention
from aomni_jax.layers.constraints import constrain
from aomni_jax.layers.linear import Dense, make_param
from aomni_jax.layers.norms import LayerNorm


def _split_heads(x: jax.Array, num_heads: int) -> jax.Array:
  return x.reshape(x.shape[:-1] + (num_heads, x.shape[-1] // num_heads))


class DividedAttention(nnx.Module):
  """Attention over time (per spatial position) or over space (per frame), with a shared CLS.

  The CLS query attends to every token; each patch query attends to [CLS; its group's tokens].
  """

  def __init__(self, cfg: SynchformerConfig, *, rngs: nnx.Rngs):
    dim, dtype, param_dtype = cfg.embed_dim, jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    self.num_heads = cfg.num_heads
    self.backend = cfg.attention
    self.qkv = Dense(dim, 3 * dim, rngs=rngs, axes=("embed", "qkv"), dtype=dtype,
                     param_dtype=param_dtype)
    self.proj = Dense(dim, dim, rngs=rngs, axes=("qkv", "embed"), dtype=dtype,
                      param_dtype=param_dtype)

  def _attend(self, q, k, v, backend: str | None = None):
    return dot_product_attention(q, k, v, backend=backend or self.backend)

  def __call__(self, x: jax.Array, *, over: str, frames: int) -> jax.Array:
    """x: [N, 1 + frames·patches, D] (CLS first, tokens in (t, y, x) order)."""
    n, length, dim = x.shape
    patches = (length - 1) // frames
    q, k, v = (_split_heads(t, self.num_heads) for t in jnp.split(self.qkv(x), 3, axis=-1))
    cls_out = self._attend(q[:, :1], k, v)

    def groups(t):  # [N, F·P, H, d] → [N·G, L, H, d], G groups of L tokens
      t = t[:, 1:].reshape((n, frames, patches) + t.shape[2:])
      if over == "time":
        t = jnp.swapaxes(t, 1, 2)
      return t.reshape((-1, t.shape[2]) + t.shape[3:])

    num_groups = patches if over == "time" else frames
    cls_kv = lambda t: jnp.repeat(t[:, :1], num_groups, axis=0)  # noqa: E731  (n g) order
    # Time groups are 9 keys long: a fused kernel gains nothing there, so they use XLA's.
    out = self._attend(groups(q), jnp.concatenate([cls_kv(k), groups(k)], axis=1),
                       jnp.concatenate([cls_kv(v), groups(v)], axis=1),
                       backend="xla" if over == "time" else None)
    out = out.reshape((n, num_groups, -1) + out.shape[2:])
    if over == "time":
      out = jnp.swapaxes(out, 1, 2)
    out = jnp.concatenate([cls_out, out.reshape((n, length - 1) + out.shape[3:])], axis=1)
    return self.proj(out.reshape(n, length, dim))


class Mlp(nnx.Module):
  """fc1 → exact GELU → fc2."""

  def __init__(self, dim: int, hidden: int, dtype: jnp.dtype, param_dtype: jnp.dtype, *,
               rngs: nnx.Rngs):
    self.fc1 = Dense(dim, hidden, rngs=rngs, axes=("embed", "mlp"), dtype=dtype,
                     param_dtype=param_dtype)
    self.fc2 = Dense(hidden, dim, rngs=rngs, axes=("mlp", "embed"), dtype=dtype,
                     param_dtype=param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class DividedSpaceTimeBlock(nnx.Module):
  """x + time-attn(norm3 x), then + space-attn(norm1 ·), then + mlp(norm2 ·) (time first)."""

  def __init__(self, cfg: SynchformerConfig, *, rngs: nnx.Rngs):
    dim, dtype, param_dtype = cfg.embed_dim, jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    norm = lambda: LayerNorm(dim, rngs=rngs, eps=cfg.norm_eps, param_dtype=param_dtype)  # noqa: E731
    self.norm1, self.norm2, self.norm3 = norm(), norm(), norm()
    self.timeattn = DividedAttention(cfg, rngs=rngs)
    self.attn = DividedAttention(cfg, rngs=rngs)
    self.mlp = Mlp(dim, dim * cfg.mlp_ratio, dtype, param_dtype, rngs=rngs)

  def __call__(self, x: jax.Array, frames: int) -> jax.Array:
    x = x + self.timeattn(self.norm3(x), over="time", frames=frames)
    x = x + self.attn(self.norm1(x), over="space", frames=frames)
    return x + self.mlp(self.norm2(x))


class SpatialAggregation(nnx.Module):
  """A norm-first TransformerEncoderLayer over [own CLS; h·w patches] of one time step; CLS out."""

  def __init__(self, cfg: SynchformerConfig, *, rngs: nnx.Rngs):
    dim, dtype, param_dtype = cfg.embed_dim, jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    self.num_heads = cfg.num_heads
    self.backend = cfg.attention
    self.cls_token = make_param(rngs, jax.nn.initializers.normal(0.02), (dim,), ("embed",),
                                param_dtype)
    self.norm1 = LayerNorm(dim, rngs=rngs, eps=cfg.norm_eps, param_dtype=param_dtype)
    self.norm2 = LayerNorm(dim, rngs=rngs, eps=cfg.norm_eps, param_dtype=param_dtype)
    self.in_proj = Dense(dim, 3 * dim, rngs=rngs, axes=("embed", "qkv"), dtype=dtype,
                         param_dtype=param_dtype)
    self.out_proj = Dense(dim, dim, rngs=rngs, axes=("qkv", "embed"), dtype=dtype,
                          param_dtype=param_dtype)
    self.mlp = Mlp(dim, dim * cfg.mlp_ratio, dtype, param_dtype, rngs=rngs)

  def __call__(self, patches: jax.Array) -> jax.Array:
    """patches: [N, P, D] (one row per segment and time step) → [N, D]."""
    n, _, dim = patches.shape
    cls = jnp.broadcast_to(self.cls_token[...].astype(patches.dtype), (n, 1, dim))
    x = self.norm1(jnp.concatenate([cls, patches], axis=1))
    kernel, bias = self.in_proj.kernel[...], self.in_proj.bias[...]
    dtype = self.in_proj.dtype
    project = lambda t, s: (jnp.dot(t.astype(dtype), kernel[:, s].astype(dtype))  # noqa: E731
                            + bias[s].astype(dtype))
    q = project(x[:, :1], slice(0, dim))
    kv = project(x, slice(dim, 3 * dim))
    k, v = jnp.split(kv, 2, axis=-1)
    heads = lambda t: _split_heads(t, self.num_heads)  # noqa: E731
    attended = dot_product_attention(heads(q), heads(k), heads(v), backend=self.backend)
    y = cls + self.out_proj(attended.reshape(n, 1, dim))
    return (y + self.mlp(self.norm2(y)))[:, 0]


class Synchformer(nnx.Module):
  """MotionFormer + spatial aggregation: one segment [N, F, H, W, 3] → [N, F/2, D]."""

  def __init__(self, cfg: SynchformerConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    dim, param_dtype = cfg.embed_dim, jnp.dtype(cfg.param_dtype)
    p, kt, grid = cfg.patch_size, cfg.tubelet_frames, cfg.grid
    self.patch_kernel = make_param(rngs, jax.nn.initializers.lecun_normal(in_axis=(0, 1, 2, 3)),
                                   (kt, p, p, 3, dim), (None, None, None, None, "embed"),
                                   param_dtype)
    self.patch_bias = make_param(rngs, jax.nn.initializers.zeros, (dim,), ("embed",), param_dtype)
    self.cls_token = make_param(rngs, jax.nn.initializers.normal(0.02), (dim,), ("embed",),
                                param_dtype)
    self.pos_embed = make_param(rngs, jax.nn.initializers.normal(0.02), (1 + grid * grid, dim),
                                (None, "embed"), param_dtype)
    self.temp_embed = make_param(rngs, jax.nn.initializers.normal(0.02), (cfg.time_tokens, dim),
                                 (None, "embed"), param_dtype)
    self.blocks = nnx.List([DividedSpaceTimeBlock(cfg, rngs=rngs) for _ in range(cfg.depth)])
    self.norm = LayerNorm(dim, rngs=rngs, eps=cfg.norm_eps, param_dtype=param_dtype)
    self.spatial_agg = SpatialAggregation(cfg, rngs=rngs)

  def patch_embed(self, segments: jax.Array) -> jax.Array:
    """Tubelet embedding (Conv3d, kernel = stride = kt×p×p): [N, F, H, W, 3] → [N, F/kt, h·w, D]."""
    cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
    n, f, h, w, c = segments.shape
    p, kt = cfg.patch_size, cfg.tubelet_frames
    x = segments.astype(dtype).reshape(n, f // kt, kt, h // p, p, w // p, p, c)
    x = jnp.einsum("ntaybxqc,abqcd->ntyxd", x, self.patch_kernel[...].astype(dtype),
                   preferred_element_type=jnp.float32)
    return (x + self.patch_bias[...]).reshape(n, f // kt, (h // p) * (w // p), -1)

  def embed(self, segments: jax.Array) -> jax.Array:
    """+ spatial table tiled over time + temporal table, CLS first: [N, 1 + F/kt · h·w, D]."""
    x = self.patch_embed(segments)
    n, t, patches, dim = x.shape
    pos = self.pos_embed[...]
    x = x + pos[1:][None] + self.temp_embed[...][:, None]
    cls = jnp.broadcast_to(self.cls_token[...] + pos[0], (n, 1, dim))
    return jnp.concatenate([cls, x.reshape(n, t * patches, dim)], axis=1).astype(self.cfg.dtype)

  def aggregate(self, x: jax.Array, frames: int) -> jax.Array:
    """Blocks' output [N, 1 + frames·h·w, D] → drop CLS → LayerNorm → per-frame CLS [N, frames, D]."""
    n, _, dim = x.shape
    x = self.norm(x[:, 1:]).reshape(n * frames, -1, dim)
    return self.spatial_agg(x).reshape(n, frames, dim)

  def __call__(self, segments: jax.Array) -> jax.Array:
    frames = segments.shape[1] // self.cfg.tubelet_frames
    x = constrain(self.embed(segments), ("batch", None, None))
    for block in self.blocks:
      x = constrain(block(x, frames), ("batch", None, None))
    return self.aggregate(x, frames)


def video_segments(frames: jax.Array, cfg: SynchformerConfig) -> jax.Array:
  """[B, T, H, W, 3] → [B·S, 16, H, W, 3] windows with stride 8, in (b s) order."""
  b, t = frames.shape[:2]
  segments = cfg.num_segments(t)
  if segments < 1:
    raise ValueError(f"{t} frames are fewer than one {cfg.segment_frames}-frame segment")
  starts = [i * cfg.segment_stride for i in range(segments)]
  windows = jnp.stack([frames[:, s:s + cfg.segment_frames] for s in starts], axis=1)
  return windows.reshape((b * segments,) + windows.shape[2:])


def normalize_frames(frames: jax.Array) -> jax.Array:
  """uint8 RGB → [−1, 1] float32 (ToDtype(scale=True) + Normalize(0.5, 0.5)); floats pass through.

  Sending uint8 frames to the device and normalising there moves 4× fewer bytes.
  """
  if frames.dtype == jnp.uint8:
    return frames.astype(jnp.float32) / 127.5 - 1.0
  return frames


def encode_video(model: Synchformer, frames: jax.Array) -> jax.Array:
  """The sync features of 25 fps clips: [B, T, H, W, 3] (uint8 or [−1, 1]) → [B, S·8, D] float32.

  250 frames (10 s) give S = 30 segments and 240 tokens; frames past the last full window are
  ignored, as in MMAudio.
  """
  b = frames.shape[0]
  out = model(video_segments(normalize_frames(frames), model.cfg))
  return out.reshape(b, -1, out.shape[-1]).astype(jnp.float32)


def official_flops(cfg: SynchformerConfig, num_frames: int) -> int:
  """Model FLOPs (2 per multiply-add) of MMAudio's computation on one clip of `num_frames`.

  Counts what the official code runs, including the spatial aggregation layer over every token
  (we compute only its CLS row); softmax and norms are left out. At the real size, 250 frames
  give 0.394 TFLOP per segment, 11.83 TFLOP per clip. official_spec §3.4 quotes 0.371 / 11.1:
  exactly this count without the aggregation layer (23.3 GFLOP per segment), which PyTorch's FLOP
  counter misses because it runs as one fused `TransformerEncoderLayer` kernel.
  """
  d, t, p = cfg.embed_dim, cfg.time_tokens, cfg.grid ** 2
  n = 1 + t * p
  embed = 2 * t * p * (cfg.tubelet_frames * cfg.patch_size ** 2 * 3) * d
  projections = 2 * n * d * (4 * d) * 2  # qkv + proj, for time and for space attention
  mlp = 2 * n * d * cfg.mlp_ratio * d * 2
  cls_attention = 2 * 2 * n * d * 2  # the CLS query over all tokens, in both attentions
  grouped = 2 * 2 * d * (p * t * (t + 1) + t * p * (p + 1))  # time groups + space groups
  block = projections + mlp + cls_attention + grouped
  rows = t * (p + 1)  # spatial aggregation: one encoder layer over [CLS; patches] per time step
  aggregation = (2 * rows * d * 4 * d + 2 * 2 * t * (p + 1) ** 2 * d
                 + 2 * rows * d * cfg.mlp_ratio * d * 2)
  return cfg.num_segments(num_frames) * (embed + cfg.depth * block + aggregation)
