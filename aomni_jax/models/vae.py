"""Oobleck VAE (official_spec §6): the frozen autoencoder between stereo audio and DiT latents.

Activations are channels-last ([B, T, C]). Weight norm is folded at conversion, so every conv holds
a plain kernel `[k, in, out]` (training from scratch may keep it unfolded: `weight_norm=True`, the
stable-audio-tools parametrisation, folded again by `fold_weight_norm` for export); transposed convs hold the equivalent forward-conv kernel (flipped,
`conversion.common.conv_transpose1d`) and run polyphase (see `ConvTranspose1d`), with PyTorch's
output length `(L − 1)·s − 2p + k`.

Numerics: parameters stay in `param_dtype`; convolutions run in `VAEConfig.dtype` (bf16 for speed,
float32 for parity); SnakeBeta and the bottleneck compute in float32 inside fused element-wise ops,
so no float32 copy of a large activation is materialised in bf16 mode.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.config import VAEConfig
from aomni_jax.layers.linear import make_param

_DIMENSIONS = ("NWC", "WIO", "NWC")
_RESIDUAL_DILATIONS = (1, 3, 9)
# PyTorch's default conv init, U(±1/sqrt(fan_in)) with fan_in = k·in, as the official model starts
# from. With it a fresh VAE outputs near silence, a benign start for training; a unit-variance
# init instead makes the stacked residual units and SnakeBetas output ~300× the input level.
_KERNEL_INIT = jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform",
                                                    in_axis=-2, out_axis=-1)


# ---------------------------------------------------------------------------------------------
# Weight norm (training only): kernel = g · v / ‖v‖, ‖·‖ over every axis but the gain's channel.

class _Kernel(nnx.Module):
  """A conv kernel [k, in, out]: a plain `kernel`, or `kernel_v` + `kernel_g` starting at the
  same kernel (g = ‖v‖, as PyTorch's `weight_norm` does when it wraps an initialised conv)."""

  def _init_kernel(self, rngs: nnx.Rngs, shape: tuple[int, int, int], gain_axis: int,
                   weight_norm: bool, param_dtype: jnp.dtype) -> None:
    axes = (None, "conv_in", "conv_out")
    self.kernel_size = shape[0]
    kernel = make_param(rngs, _KERNEL_INIT, shape, axes, param_dtype)
    if not weight_norm:
      self.kernel = kernel
      return
    self.norm_axes = tuple(a for a in range(3) if a != gain_axis)
    self.kernel_v = kernel
    self.kernel_g = nnx.Param(jnp.sqrt(jnp.sum(jnp.square(kernel[...]), axis=self.norm_axes)),
                              out_sharding=(axes[gain_axis],), eager_sharding=False)

  def kernel_value(self) -> jax.Array:
    """The kernel the conv applies (weight norm folded)."""
    if not hasattr(self, "kernel_v"):
      return self.kernel[...]
    v = self.kernel_v[...].astype(jnp.float32)
    gain = self.kernel_g[...].astype(jnp.float32) * jax.lax.rsqrt(
        jnp.sum(jnp.square(v), axis=self.norm_axes) + 1e-12)
    return (v * jnp.expand_dims(gain, self.norm_axes)).astype(self.kernel_v.dtype)


# ---------------------------------------------------------------------------------------------
# Layers.

def snake_beta(x: jax.Array, log_alpha: jax.Array, log_beta: jax.Array) -> jax.Array:
  """x + sin²(e^α·x) / (e^β + 1e-9), per channel (last axis); float32 math, x's dtype out."""
  xf = x.astype(jnp.float32)
  alpha = jnp.exp(log_alpha.astype(jnp.float32))
  inv_beta = 1.0 / (jnp.exp(log_beta.astype(jnp.float32)) + 1e-9)
  return (xf + inv_beta * jnp.square(jnp.sin(alpha * xf))).astype(x.dtype)


class SnakeBeta(nnx.Module):
  """SnakeBeta with log-scale α and β (initialised to 0, i.e. α = β = 1)."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs, param_dtype: jnp.dtype):
    zeros = jax.nn.initializers.zeros
    self.alpha = make_param(rngs, zeros, (channels,), ("channels",), param_dtype)
    self.beta = make_param(rngs, zeros, (channels,), ("channels",), param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    return snake_beta(x, self.alpha[...], self.beta[...])


class Conv1d(_Kernel):
  """PyTorch-semantics Conv1d (symmetric zero padding) on [B, T, C]; kernel [k, in, out]."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, rngs: nnx.Rngs,
               dtype: jnp.dtype, param_dtype: jnp.dtype, stride: int = 1, dilation: int = 1,
               padding: int = 0, use_bias: bool = True, weight_norm: bool = False):
    self.stride, self.dilation, self.padding, self.dtype = stride, dilation, padding, dtype
    self._init_kernel(rngs, (kernel_size, in_channels, out_channels), 2, weight_norm, param_dtype)
    self.bias = (make_param(rngs, jax.nn.initializers.zeros, (out_channels,), ("conv_out",),
                            param_dtype) if use_bias else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), self.kernel_value().astype(self.dtype), (self.stride,),
        [(self.padding, self.padding)], rhs_dilation=(self.dilation,),
        dimension_numbers=_DIMENSIONS)
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class ConvTranspose1d(_Kernel):
  """PyTorch-semantics ConvTranspose1d (no output padding), computed polyphase.

  The kernel is stored in forward-conv form: PyTorch's [in, out, k] flipped along k, as [k, in, out]
  (`conversion.common.conv_transpose1d`). With w[j] the PyTorch taps, padded with zeros to m·s
  taps (m = ⌈k/s⌉), the uncropped output at q·s + r is Σ_t x[q − t]·w[t·s + r]: one stride-1 conv
  with m taps and s·out channels, whose channels-last output reshapes for free into the s phases.
  That multiplies no inserted zeros (unlike a conv over the s-dilated input, s× the work) and is a
  plain convolution on every backend. PyTorch's padding p then crops p samples from each end.
  """

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int,
               padding: int, rngs: nnx.Rngs, dtype: jnp.dtype, param_dtype: jnp.dtype,
               weight_norm: bool = False):
    if padding > kernel_size - 1:
      raise ValueError(f"padding {padding} must not exceed kernel_size - 1 = {kernel_size - 1}")
    self.stride, self.padding, self.dtype = stride, padding, dtype
    # PyTorch's weight_norm keeps its dim 0 of [in, out, k]: one gain per input channel here.
    self._init_kernel(rngs, (kernel_size, in_channels, out_channels), 1, weight_norm, param_dtype)
    self.bias = make_param(rngs, jax.nn.initializers.zeros, (out_channels,), ("conv_out",),
                           param_dtype)

  def _phase_kernel(self) -> jax.Array:
    """[m, in, s·out]: tap t of the conv reads x[q − (m − 1 − t)] and holds w[(m−1−t)·s + r]."""
    w = self.kernel_value().astype(self.dtype)
    k, c_in, c_out = w.shape
    s = self.stride
    m = -(-k // s)
    w = w[::-1]  # back to PyTorch tap order
    w = jnp.pad(w, ((0, m * s - k), (0, 0), (0, 0)))
    taps = w.reshape(m, s, c_in, c_out).transpose(0, 2, 1, 3).reshape(m, c_in, s * c_out)
    return taps[::-1]

  def __call__(self, x: jax.Array) -> jax.Array:
    batch, length, _ = x.shape
    k = self.kernel_size
    c_out = self.bias.shape[0]
    kernel = self._phase_kernel()
    m = kernel.shape[0]
    y = jax.lax.conv_general_dilated(x.astype(self.dtype), kernel, (1,), [(m - 1, m - 1)],
                                     dimension_numbers=_DIMENSIONS)  # [B, L + m − 1, s·out]
    y = y.reshape(batch, (length + m - 1) * self.stride, c_out)
    out_length = (length - 1) * self.stride + k - 2 * self.padding
    y = jax.lax.slice_in_dim(y, self.padding, self.padding + out_length, axis=1)
    return y + self.bias[...].astype(self.dtype)


@dataclasses.dataclass(frozen=True)
class _Numerics:
  rngs: nnx.Rngs
  dtype: jnp.dtype
  param_dtype: jnp.dtype
  weight_norm: bool

  def kwargs(self) -> dict:
    return {"rngs": self.rngs, "dtype": self.dtype, "param_dtype": self.param_dtype,
            "weight_norm": self.weight_norm}

  def snake(self, channels: int) -> SnakeBeta:
    return SnakeBeta(channels, rngs=self.rngs, param_dtype=self.param_dtype)


def _run(layers: Sequence[Callable[[jax.Array], jax.Array]], x: jax.Array) -> jax.Array:
  for layer in layers:
    x = layer(x)
  return x


class ResidualUnit(nnx.Module):
  """x + conv1x1(snake(conv7_dilated(snake(x))))."""

  def __init__(self, channels: int, dilation: int, numerics: _Numerics):
    self.snake_in = numerics.snake(channels)
    self.conv_dilated = Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation,
                               **numerics.kwargs())
    self.snake_mid = numerics.snake(channels)
    self.conv_pointwise = Conv1d(channels, channels, 1, **numerics.kwargs())

  def __call__(self, x: jax.Array) -> jax.Array:
    return x + self.conv_pointwise(self.snake_mid(self.conv_dilated(self.snake_in(x))))


class EncoderBlock(nnx.Module):
  """Three residual units (dilations 1, 3, 9), SnakeBeta, then a strided conv (k 2s, p ⌈s/2⌉)."""

  def __init__(self, in_channels: int, out_channels: int, stride: int, numerics: _Numerics):
    self.res_units = nnx.List([ResidualUnit(in_channels, d, numerics) for d in _RESIDUAL_DILATIONS])
    self.snake = numerics.snake(in_channels)
    self.down = Conv1d(in_channels, out_channels, 2 * stride, stride=stride,
                       padding=math.ceil(stride / 2), **numerics.kwargs())

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down(self.snake(_run(self.res_units, x)))


class DecoderBlock(nnx.Module):
  """SnakeBeta, a transposed conv (k 2s, stride s, p ⌈s/2⌉), then three residual units."""

  def __init__(self, in_channels: int, out_channels: int, stride: int, numerics: _Numerics):
    self.snake = numerics.snake(in_channels)
    self.up = ConvTranspose1d(in_channels, out_channels, 2 * stride, stride=stride,
                              padding=math.ceil(stride / 2), **numerics.kwargs())
    self.res_units = nnx.List([ResidualUnit(out_channels, d, numerics)
                               for d in _RESIDUAL_DILATIONS])

  def __call__(self, x: jax.Array) -> jax.Array:
    return _run(self.res_units, self.up(self.snake(x)))


def _widths(cfg: VAEConfig) -> list[int]:
  """Channel width at each resolution, input side first (the official implicit leading 1)."""
  return [cfg.channels * m for m in (1, *cfg.c_mults)]


class OobleckEncoder(nnx.Module):
  """audio [B, T, audio_channels] → pre-bottleneck [B, T/ratio, 2·latent_dim]."""

  def __init__(self, cfg: VAEConfig, numerics: _Numerics):
    widths = _widths(cfg)
    self.conv_in = Conv1d(cfg.audio_channels, widths[0], 7, padding=3, **numerics.kwargs())
    self.blocks = nnx.List([EncoderBlock(widths[i], widths[i + 1], s, numerics)
                            for i, s in enumerate(cfg.strides)])
    self.snake_out = numerics.snake(widths[-1])
    self.conv_out = Conv1d(widths[-1], 2 * cfg.latent_dim, 3, padding=1, **numerics.kwargs())

  def layers(self) -> list[Callable[[jax.Array], jax.Array]]:
    """The official `encoder.layers` slots, in order."""
    return [self.conv_in, *self.blocks, self.snake_out, self.conv_out]

  def __call__(self, audio: jax.Array) -> jax.Array:
    return _run(self.layers(), audio)


class OobleckDecoder(nnx.Module):
  """latents [B, N, latent_dim] → audio [B, N·ratio, audio_channels] (no final tanh)."""

  def __init__(self, cfg: VAEConfig, numerics: _Numerics):
    widths = _widths(cfg)
    self.conv_in = Conv1d(cfg.latent_dim, widths[-1], 7, padding=3, **numerics.kwargs())
    self.blocks = nnx.List([DecoderBlock(widths[i + 1], widths[i], cfg.strides[i], numerics)
                            for i in reversed(range(len(cfg.strides)))])
    self.snake_out = numerics.snake(widths[0])
    self.conv_out = Conv1d(widths[0], cfg.audio_channels, 7, padding=3, use_bias=False,
                           **numerics.kwargs())

  def layers(self) -> list[Callable[[jax.Array], jax.Array]]:
    """The official `decoder.layers` slots, in order (the final Identity left out)."""
    return [self.conv_in, *self.blocks, self.snake_out, self.conv_out]

  def __call__(self, latents: jax.Array) -> jax.Array:
    return _run(self.layers(), latents)


# ---------------------------------------------------------------------------------------------
# The `vae` bottleneck (parameter-free).

class Posterior(NamedTuple):
  """The diagonal Gaussian the encoder predicts, float32 [B, N, latent_dim] each."""

  mean: jax.Array
  std: jax.Array

  def sample(self, noise: jax.Array) -> jax.Array:
    return self.mean + self.std * noise.astype(jnp.float32)

  def kl(self) -> jax.Array:
    """Σ over channels of (μ² + σ² − log σ² − 1), averaged over batch and time (no ½)."""
    var = jnp.square(self.std)
    return jnp.mean(jnp.sum(jnp.square(self.mean) + var - jnp.log(var) - 1.0, axis=-1))


def posterior(pre_bottleneck: jax.Array) -> Posterior:
  """Splits channels into mean (first half) and raw scale; std = softplus(scale) + 1e-4."""
  pre = pre_bottleneck.astype(jnp.float32)
  mean, scale = jnp.split(pre, 2, axis=-1)
  return Posterior(mean, jax.nn.softplus(scale) + 1e-4)


# ---------------------------------------------------------------------------------------------
# Lengths, receptive fields and input checks.

def encoded_length(cfg: VAEConfig, num_samples: int) -> int:
  """Latent frames the encoder emits for `num_samples` (PyTorch strided-conv lengths)."""
  length = num_samples
  for s in cfg.strides:
    length = (length + 2 * math.ceil(s / 2) - 2 * s) // s + 1
  return length


def decoded_length(cfg: VAEConfig, num_frames: int) -> int:
  """Samples the decoder emits for `num_frames` latents: (L − 1)·s − 2p + k per block."""
  length = num_frames
  for s in reversed(cfg.strides):
    length = (length - 1) * s - 2 * math.ceil(s / 2) + 2 * s
  return length


def _context(layers: Sequence[tuple[float, float]]) -> int:
  """Latent frames of context needed on each side, from per-layer (left, right) extents."""
  left = sum(extent[0] for extent in layers)
  right = sum(extent[1] for extent in layers)
  return math.ceil(max(left, right)) + 1  # +1 covers the sub-frame position of an output sample


def _residual_extents(rate: float) -> list[tuple[float, float]]:
  return [(3 * d / rate, 3 * d / rate) for d in _RESIDUAL_DILATIONS]


def encoder_context_frames(cfg: VAEConfig) -> int:
  """An upper bound, in latent frames, on how far the encoder looks to either side of a frame."""
  rate = float(cfg.downsampling_ratio)  # samples per latent frame at the current layer
  extents = [(3 / rate, 3 / rate)]
  for s in cfg.strides:
    p = math.ceil(s / 2)
    extents += _residual_extents(rate) + [(p / rate, (2 * s - 1 - p) / rate)]
    rate /= s
  return _context(extents + [(1.0, 1.0)])


def decoder_context_frames(cfg: VAEConfig) -> int:
  """An upper bound, in latent frames, on how far the decoder looks to either side of a sample."""
  rate = 1.0
  extents = [(3.0, 3.0)]
  for s in reversed(cfg.strides):
    p = math.ceil(s / 2)
    rate *= s
    extents += [((2 * s - 1 - p) / rate, p / rate)] + _residual_extents(rate)
  return _context(extents + [(3 / rate, 3 / rate)])


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def validate_audio(audio, cfg: VAEConfig, name: str = "audio") -> None:
  """Raises ValueError naming `name` unless it is finite [B, T ≥ ratio, audio_channels] audio.

  The finiteness check needs values, so it runs only on concrete arrays (not under jit).
  """
  shape = tuple(audio.shape)
  if len(shape) != 3:
    raise ValueError(f"{name}: expected [batch, samples, {cfg.audio_channels}] (channels-last), "
                     f"got shape {shape}")
  if shape[2] != cfg.audio_channels:
    raise ValueError(f"{name}: expected {cfg.audio_channels} channels in the last axis "
                     f"(channels-last [batch, samples, channels]), got {shape[2]} (shape {shape})")
  if shape[1] < cfg.downsampling_ratio:
    raise ValueError(f"{name}: {shape[1]} samples is shorter than one latent hop "
                     f"({cfg.downsampling_ratio} samples)")
  if _is_concrete(audio) and not np.all(np.isfinite(np.asarray(audio))):
    raise ValueError(f"{name}: contains NaN or infinite samples")


def validate_latents(latents, cfg: VAEConfig, name: str = "latents") -> None:
  """Raises ValueError naming `name` unless it is [B, N ≥ 1, latent_dim]."""
  shape = tuple(latents.shape)
  if len(shape) != 3 or shape[2] != cfg.latent_dim or shape[1] < 1:
    raise ValueError(f"{name}: expected [batch, frames >= 1, {cfg.latent_dim}] (channels-last), "
                     f"got shape {shape}")


# ---------------------------------------------------------------------------------------------
# Overlapping windows (chunked encode/decode).

def _window_plan(num_frames: int, chunk: int, overlap: int) -> list[tuple[int, int, int]]:
  """(start, keep_from, keep_to) in frames per window; windows cover [0, num_frames).

  Windows of `chunk` frames advance by chunk − overlap; the last one is aligned to the end. Each
  pair of neighbours splits its shared frames in the middle, so every kept frame is at least
  ⌊overlap/2⌋ frames from a window edge that is not the sequence edge.
  """
  if not 0 <= overlap < chunk:
    raise ValueError(f"chunk={chunk}, overlap={overlap}: need 0 <= overlap < chunk")
  starts = list(range(0, num_frames - chunk, chunk - overlap)) + [num_frames - chunk]
  bounds = [0] + [(nxt + cur + chunk) // 2 for cur, nxt in zip(starts, starts[1:])] + [num_frames]
  return [(start, bounds[i], bounds[i + 1]) for i, start in enumerate(starts)]


def _stitch(outputs: jax.Array, plan: list[tuple[int, int, int]], per_frame: int) -> jax.Array:
  """Concatenates the kept part of each window output [W, B, chunk·per_frame, C] along time."""
  pieces = [outputs[w, :, (lo - start) * per_frame:(hi - start) * per_frame]
            for w, (start, lo, hi) in enumerate(plan)]
  return jnp.concatenate(pieces, axis=1)


def _map_windows(fn: Callable[[jax.Array], jax.Array], windows: jax.Array) -> jax.Array:
  """Runs `fn` over the leading (window) axis one window at a time, to bound peak memory."""
  return jax.lax.map(fn, windows)


# ---------------------------------------------------------------------------------------------
# The pretransform.

class OobleckVAE(nnx.Module):
  """Encoder + `vae` bottleneck + decoder, with the official pretransform's latent scale.

  `weight_norm=True` parametrises every conv as stable-audio-tools trains it (g · v / ‖v‖);
  `fold_weight_norm` turns such a VAE into the plain one that inference and conversion use.
  """

  def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs, weight_norm: bool = False):
    self.cfg = cfg
    numerics = _Numerics(rngs, jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype), weight_norm)
    self.encoder = OobleckEncoder(cfg, numerics)
    self.decoder = OobleckDecoder(cfg, numerics)

  # Encoding. Latents are float32 whatever the compute dtype.
  def posterior(self, audio: jax.Array) -> Posterior:
    validate_audio(audio, self.cfg)
    return posterior(self.encoder(audio))

  def encode_mean(self, audio: jax.Array) -> jax.Array:
    """Deterministic latents (the posterior mean) / scale."""
    return self.posterior(audio).mean / self.cfg.latent_scale

  def encode_with_noise(self, audio: jax.Array, noise: jax.Array) -> jax.Array:
    """(mean + std·noise) / scale, for an injected standard-normal `noise` [B, N, latent_dim]."""
    return self.posterior(audio).sample(noise) / self.cfg.latent_scale

  def encode(self, audio: jax.Array, key: jax.Array) -> jax.Array:
    """The official stochastic encode: one N(0, 1) draw over the whole batch from `key`."""
    post = self.posterior(audio)
    return post.sample(jax.random.normal(key, post.mean.shape)) / self.cfg.latent_scale

  def decode(self, latents: jax.Array) -> jax.Array:
    """latents [B, N, latent_dim] → float32 audio [B, N·ratio, audio_channels]."""
    validate_latents(latents, self.cfg)
    return self.decoder(latents * self.cfg.latent_scale).astype(jnp.float32)

  # Long inputs: overlapping windows, each run on its own, the middle of every overlap kept.
  def posterior_chunked(self, audio: jax.Array, chunk: int = 128,
                        overlap: int | None = None) -> Posterior:
    """`posterior` over windows of `chunk` latent frames sharing `overlap` frames.

    With the default overlap (twice `encoder_context_frames`) the result equals the unchunked one
    up to float rounding.
    """
    validate_audio(audio, self.cfg)
    ratio = self.cfg.downsampling_ratio
    num_samples = audio.shape[1]
    num_frames = encoded_length(self.cfg, num_samples)
    if num_frames <= chunk:
      return self.posterior(audio)
    overlap = 2 * encoder_context_frames(self.cfg) if overlap is None else overlap
    plan = _window_plan(num_frames, chunk, overlap)
    # Every window also carries the samples past the last whole frame, so that it emits exactly
    # `chunk` frames, as the unchunked encoder does for the tail.
    window_samples = num_samples - (num_frames - chunk) * ratio
    if encoded_length(self.cfg, window_samples) != chunk:
      raise ValueError(f"audio: {num_samples} samples cannot be split into {chunk}-frame windows "
                       f"for strides {self.cfg.strides}")
    windows = jnp.stack([audio[:, start * ratio:start * ratio + window_samples]
                         for start, _, _ in plan])
    pre = _stitch(_map_windows(self.encoder, windows), plan, 1)
    return posterior(pre)

  def encode_chunked(self, audio: jax.Array, key: jax.Array, chunk: int = 128,
                     overlap: int | None = None) -> jax.Array:
    """`encode` through `posterior_chunked`: the same noise draw as the unchunked call."""
    post = self.posterior_chunked(audio, chunk, overlap)
    return post.sample(jax.random.normal(key, post.mean.shape)) / self.cfg.latent_scale

  def decode_chunked(self, latents: jax.Array, chunk: int = 128,
                     overlap: int | None = None) -> jax.Array:
    """`decode` over windows of `chunk` latent frames sharing `overlap` frames.

    With the default overlap (twice `decoder_context_frames`) the result equals the unchunked one
    up to float rounding.
    """
    validate_latents(latents, self.cfg)
    num_frames = latents.shape[1]
    if num_frames <= chunk:
      return self.decode(latents)
    per_frame = decoded_length(self.cfg, chunk) // chunk
    if decoded_length(self.cfg, chunk) != chunk * per_frame:
      raise ValueError(f"strides {self.cfg.strides} do not give a whole number of samples per "
                       "latent frame; decode_chunked needs one")
    overlap = 2 * decoder_context_frames(self.cfg) if overlap is None else overlap
    plan = _window_plan(num_frames, chunk, overlap)
    windows = jnp.stack([latents[:, start:start + chunk] for start, _, _ in plan])
    return _stitch(_map_windows(self.decode, windows), plan, per_frame)


def fold_weight_norm(vae: OobleckVAE) -> OobleckVAE:
  """The plain-kernel OobleckVAE computing the same function as a `weight_norm=True` one."""
  plain = nnx.eval_shape(lambda: OobleckVAE(vae.cfg, rngs=nnx.Rngs(0)))
  kernels = {path: node.kernel_value() for path, node in nnx.iter_graph(vae)
             if isinstance(node, _Kernel)}
  values = dict(nnx.to_flat_state(nnx.state(vae, nnx.Param)))
  graphdef, state = nnx.split(plain)
  flat = []
  for path, var in nnx.to_flat_state(state):
    value = kernels[path[:-1]] if path[-1] == "kernel" else values[path][...]
    flat.append((path, var.replace(value=value)))
  return nnx.merge(graphdef, nnx.from_flat_state(flat))
