"""The thinker's Whisper-style audio encoder, with attention restricted to 2·n_window-frame chunks.

Each clip's valid mel frames are cut (on the host) into chunks of `2·n_window` frames, every chunk
zero-padded to that static length. The conv stem, the sinusoidal positions (restarting at 0) and
the attention all act per chunk, so the chunks are simply the batch axis; the padded frames are
masked out of attention and dropped by the final pooling gather. Padding every chunk to the full
length is exact: HF pads to the longest chunk, and beyond a chunk's end both see zeros.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.layers.attention import dot_product_attention
from aomni_jax.layers.linear import make_param
from aomni_jax.layers.norms import layer_norm
from aomni_jax.models.qwen_omni.config import AudioConfig, ThinkerConfig

_normal = jax.nn.initializers.normal(0.02)
_zeros = jax.nn.initializers.zeros
_ones = jax.nn.initializers.ones
_LN_EPS = 1e-5  # torch nn.LayerNorm default


class AudioInputs(NamedTuple):
  """Host-prepared audio: chunks [C, 2·n_window, mel], lengths [C], pooling pairs [N] each.

  `pool_first`/`pool_second` index the flattened post-conv frames [C · n_window] of the frames
  that are averaged into each output token (clip order).
  """

  chunks: jax.Array
  chunk_lengths: jax.Array
  pool_first: jax.Array
  pool_second: jax.Array


def output_lengths(mel_lengths: np.ndarray) -> np.ndarray:
  """Audio tokens per clip: stride-2 conv, then pooling pairs (floor)."""
  after_conv = (np.asarray(mel_lengths) - 1) // 2 + 1
  return (after_conv - 2) // 2 + 1


def audio_inputs(features: np.ndarray, mel_lengths: np.ndarray, cfg: AudioConfig) -> AudioInputs:
  """Chunks the valid frames of each clip. features: [A, mel, T] (processor layout)."""
  size = cfg.chunk_frames
  slots = (size - 1) // 2 + 1  # post-conv frames of a full chunk = slots per chunk
  chunks, lengths, first, second = [], [], [], []
  for clip, length in zip(features, np.asarray(mel_lengths).tolist()):
    if length <= 0:
      raise ValueError(f"an audio clip has {length} valid mel frames; expected > 0")
    frames = np.asarray(clip[:, :length], np.float32).T
    valid = []  # flat slot index of every valid post-conv frame of this clip, in time order
    for start in range(0, length, size):
      piece = frames[start:start + size]
      valid.extend(range(len(chunks) * slots, len(chunks) * slots + (len(piece) - 1) // 2 + 1))
      chunks.append(np.pad(piece, [(0, size - len(piece)), (0, 0)]))
      lengths.append(len(piece))
    # Pooling pairs run over the whole clip, so a pair may straddle two chunks.
    pairs = int(output_lengths(np.array([length]))[0])
    first.extend(valid[2 * i] for i in range(pairs))
    second.extend(valid[2 * i + 1] for i in range(pairs))
  return AudioInputs(np.stack(chunks), np.asarray(lengths, np.int32),
                     np.asarray(first, np.int32), np.asarray(second, np.int32))


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> jax.Array:
  """Whisper positions: [sin | cos] with log-spaced timescales (increment ln(T)/(C/2 − 1))."""
  increment = math.log(max_timescale) / (channels // 2 - 1)
  inv_timescales = jnp.exp(-increment * jnp.arange(channels // 2, dtype=jnp.float32))
  scaled = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_timescales[None, :]
  return jnp.concatenate([jnp.sin(scaled), jnp.cos(scaled)], axis=1)


class AudioEncoder(nnx.Module):
  """conv stem → chunked pre-LN transformer → pair pooling → ln_post → proj."""

  def __init__(self, cfg: ThinkerConfig, *, rngs: nnx.Rngs):
    a, dt = cfg.audio, cfg.weight_dtype
    d, n = a.d_model, a.num_layers
    self.cfg = cfg
    self.conv1_kernel = make_param(rngs, _normal, (3, a.num_mel_bins, d),
                                   (None, None, "embed"), dt)
    self.conv1_bias = make_param(rngs, _zeros, (d,), ("embed",), dt)
    self.conv2_kernel = make_param(rngs, _normal, (3, d, d), (None, None, "embed"), dt)
    self.conv2_bias = make_param(rngs, _zeros, (d,), ("embed",), dt)
    # Stored in every checkpoint but unused by the thinker's forward; kept for strict loading.
    self.bos_eos_embedding = make_param(rngs, _normal, (2, a.output_dim), (None, "embed"), dt)

    def stacked(init, shape, axes):
      return make_param(rngs, init, (n, *shape), ("layers", *axes), dt)

    self.layers = nnx.data({
        "attn_norm_scale": stacked(_ones, (d,), ("norm",)),
        "attn_norm_bias": stacked(_zeros, (d,), ("norm",)),
        "q_kernel": stacked(_normal, (d, d), ("embed", "heads")),
        "q_bias": stacked(_zeros, (d,), ("heads",)),
        "k_kernel": stacked(_normal, (d, d), ("embed", "heads")),
        "v_kernel": stacked(_normal, (d, d), ("embed", "heads")),
        "v_bias": stacked(_zeros, (d,), ("heads",)),
        "o_kernel": stacked(_normal, (d, d), ("heads", "embed")),
        "o_bias": stacked(_zeros, (d,), ("embed",)),
        "mlp_norm_scale": stacked(_ones, (d,), ("norm",)),
        "mlp_norm_bias": stacked(_zeros, (d,), ("norm",)),
        "fc1_kernel": stacked(_normal, (d, a.ffn_dim), ("embed", "mlp")),
        "fc1_bias": stacked(_zeros, (a.ffn_dim,), ("mlp",)),
        "fc2_kernel": stacked(_normal, (a.ffn_dim, d), ("mlp", "embed")),
        "fc2_bias": stacked(_zeros, (d,), ("embed",)),
    })
    self.ln_post_scale = make_param(rngs, _ones, (d,), ("norm",), dt)
    self.ln_post_bias = make_param(rngs, _zeros, (d,), ("norm",), dt)
    self.proj_kernel = make_param(rngs, _normal, (d, a.output_dim), ("embed", "mlp"), dt)
    self.proj_bias = make_param(rngs, _zeros, (a.output_dim,), ("mlp",), dt)

  def __call__(self, inputs: AudioInputs) -> jax.Array:
    """Audio tokens [N, output_dim] for all clips, in clip order."""
    a, dt = self.cfg.audio, self.cfg.compute_dtype
    x = inputs.chunks.astype(dt)
    frame_valid = jnp.arange(x.shape[1])[None, :] < inputs.chunk_lengths[:, None]
    x = _gelu(_conv(x, self.conv1_kernel[...], self.conv1_bias[...], 1, dt))
    x = x * frame_valid[..., None].astype(dt)
    x = _gelu(_conv(x, self.conv2_kernel[...], self.conv2_bias[...], 2, dt))
    x = x + sinusoids(x.shape[1], a.d_model).astype(dt)[None]
    post_lengths = (inputs.chunk_lengths - 1) // 2 + 1
    key_mask = jnp.arange(x.shape[1])[None, :] < post_lengths[:, None]

    def body(h, p):
      return _encoder_layer(self.cfg, p, h, key_mask), None

    params = {name: var[...] for name, var in self.layers.items()}
    x, _ = jax.lax.scan(body, x, params)
    flat = x.reshape(-1, x.shape[-1])
    pooled = (flat[inputs.pool_first] + flat[inputs.pool_second]) / 2
    pooled = layer_norm(pooled, self.ln_post_scale[...], self.ln_post_bias[...], _LN_EPS)
    return (jnp.dot(pooled.astype(dt), self.proj_kernel[...].astype(dt))
            + self.proj_bias[...].astype(dt))


def _gelu(x: jax.Array) -> jax.Array:
  return jax.nn.gelu(x, approximate=False)


def _conv(x: jax.Array, kernel: jax.Array, bias: jax.Array, stride: int, dt) -> jax.Array:
  """Conv1d with kernel 3 and padding 1 over channels-last x [C, T, in]."""
  y = jax.lax.conv_general_dilated(x.astype(dt), kernel.astype(dt), (stride,), [(1, 1)],
                                   dimension_numbers=("NWC", "WIO", "NWC"))
  return y + bias.astype(dt)


def _encoder_layer(cfg: ThinkerConfig, p: dict[str, jax.Array], x: jax.Array,
                   key_mask: jax.Array) -> jax.Array:
  a, dt = cfg.audio, cfg.compute_dtype
  c, t, d = x.shape
  heads = a.num_heads

  def dense(y, kernel, bias=None):
    out = jnp.dot(y.astype(dt), kernel.astype(dt))
    return out if bias is None else out + bias.astype(dt)

  h = layer_norm(x, p["attn_norm_scale"], p["attn_norm_bias"], _LN_EPS)
  q = dense(h, p["q_kernel"], p["q_bias"]).reshape(c, t, heads, d // heads)
  k = dense(h, p["k_kernel"]).reshape(c, t, heads, d // heads)
  v = dense(h, p["v_kernel"], p["v_bias"]).reshape(c, t, heads, d // heads)
  attn = dot_product_attention(q, k, v, key_mask=key_mask, backend=cfg.attention)
  x = x + dense(attn.reshape(c, t, d), p["o_kernel"], p["o_bias"]).astype(x.dtype)
  h = layer_norm(x, p["mlp_norm_scale"], p["mlp_norm_bias"], _LN_EPS)
  h = dense(_gelu(dense(h, p["fc1_kernel"], p["fc1_bias"])), p["fc2_kernel"], p["fc2_bias"])
  return x + h.astype(x.dtype)
