"""Multi-resolution STFT reconstruction loss (auraloss semantics, as stable-audio-tools uses it).

Per resolution (Hann window, centred reflect padding, |X| = sqrt(max(re² + im², 1e-8))):
spectral convergence ‖|Y| − |X|‖_F / ‖|Y|‖_F over the whole batch, plus the mean absolute
difference of log magnitudes; the multi-resolution loss averages the resolutions. Stereo uses the
sum-and-difference form, (w_sum·L(mid) + w_diff·L(side)) / 2, so the stereo image is trained
too (or, with `stft_stereo="channels"`, both channels as signals of one group). Perceptual
weighting filters both signals with a 101-tap least-squares FIR fit of the
A-weighting curve first, so the loss is not dominated by low-frequency energy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal

from aomni_jax.audio import mel
from aomni_jax.config import AutoencoderConfig

MAGNITUDE_EPS = 1e-8


@functools.cache
def a_weighting_taps(sample_rate: int, num_taps: int = 101) -> np.ndarray:
  """Least-squares FIR fit of the IEC A-weighting response (its analog poles, bilinear)."""
  f1, f2, f3, f4, gain_1k_db = 20.598997, 107.65265, 737.86223, 12194.217, 1.9997
  numerator = [(2 * np.pi * f4) ** 2 * 10 ** (gain_1k_db / 20), 0, 0, 0, 0]
  denominator = np.polymul([1, 4 * np.pi * f4, (2 * np.pi * f4) ** 2],
                           [1, 4 * np.pi * f1, (2 * np.pi * f1) ** 2])
  denominator = np.polymul(np.polymul(denominator, [1, 2 * np.pi * f3]), [1, 2 * np.pi * f2])
  b, a = scipy.signal.bilinear(numerator, denominator, fs=sample_rate)
  freqs, response = scipy.signal.freqz(b, a, worN=512, fs=sample_rate)
  return scipy.signal.firls(num_taps, freqs, np.abs(response), fs=sample_rate).astype(np.float32)


def fir_filter(x: jax.Array, taps: np.ndarray) -> jax.Array:
  """[N, T] → [N, T]: cross-correlation with `taps`, zero padding len(taps) // 2 per side."""
  pad = len(taps) // 2
  y = jax.lax.conv_general_dilated(x[:, :, None].astype(jnp.float32),
                                   jnp.asarray(taps)[:, None, None], (1,), [(pad, pad)],
                                   dimension_numbers=("NWC", "WIO", "NWC"),
                                   precision=jax.lax.Precision.HIGHEST)
  return y[:, :, 0]


def _magnitude(x: jax.Array, n_fft: int, hop: int) -> jax.Array:
  """[..., T] → [..., frames, bins]: sqrt(max(|STFT|², eps))."""
  spectrum = mel.stft(x.reshape(-1, x.shape[-1]), n_fft, hop, n_fft)
  power = jnp.square(spectrum.real) + jnp.square(spectrum.imag)
  return jnp.sqrt(jnp.maximum(power, MAGNITUDE_EPS)).reshape(*x.shape[:-1], *spectrum.shape[1:])


def _stft_losses(estimate: jax.Array, target: jax.Array, n_fft: int, hop: int) -> jax.Array:
  """[P, N, T] signal groups → [P] losses; one STFT over all of them keeps the graph small."""
  mags = _magnitude(jnp.stack([estimate, target]), n_fft, hop)
  x, y = mags[0], mags[1]
  axes = tuple(range(1, x.ndim))
  convergence = (jnp.sqrt(jnp.sum(jnp.square(y - x), axis=axes))
                 / jnp.sqrt(jnp.sum(jnp.square(y), axis=axes)))
  return convergence + jnp.mean(jnp.abs(jnp.log(x) - jnp.log(y)), axis=axes)


def _multi_resolution(estimate: jax.Array, target: jax.Array, fft_sizes: tuple[int, ...],
                      hop_ratio: float) -> jax.Array:
  losses = [_stft_losses(estimate, target, n, int(n * hop_ratio)) for n in fft_sizes]
  return sum(losses) / len(losses)


def stft_loss(estimate: jax.Array, target: jax.Array, n_fft: int, hop: int) -> jax.Array:
  """Spectral convergence + log-magnitude L1 at one resolution; [N, T] signals."""
  return _stft_losses(estimate[None], target[None], n_fft, hop)[0]


def multi_resolution_stft_loss(estimate: jax.Array, target: jax.Array, fft_sizes: tuple[int, ...],
                               hop_ratio: float) -> jax.Array:
  """Mean of `stft_loss` over `fft_sizes` (window = FFT size, hop = int(size·hop_ratio))."""
  return _multi_resolution(estimate[None], target[None], fft_sizes, hop_ratio)[0]


def reconstruction_loss(estimate: jax.Array, target: jax.Array, cfg: AutoencoderConfig,
                        sample_rate: int) -> jax.Array:
  """The VAE's spectral loss on channels-last audio [B, T, C]."""
  if target.shape[-1] == 2 and cfg.stft_stereo == "sum_difference":
    mid_side = lambda a: jnp.stack([a[..., 0] + a[..., 1], a[..., 0] - a[..., 1]])
    x, y = mid_side(estimate), mid_side(target)
    weights = jnp.asarray([cfg.stft_sum_weight, cfg.stft_diff_weight]) / 2
  else:  # every channel a signal of one group, as auraloss does for [B, C, T]
    as_group = lambda a: jnp.moveaxis(a, -1, 1).reshape(1, -1, a.shape[1])
    x, y, weights = as_group(estimate), as_group(target), jnp.ones(1)
  if cfg.stft_perceptual_weighting:
    taps = a_weighting_taps(sample_rate)
    x, y = (fir_filter(a.reshape(-1, a.shape[-1]), taps).reshape(a.shape) for a in (x, y))
  return jnp.sum(weights * _multi_resolution(x, y, cfg.stft_fft_sizes, cfg.stft_hop_ratio))
