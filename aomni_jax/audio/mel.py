"""Log-magnitude mel spectrogram, numerically the one torchaudio computes for the mel encoder.

torchaudio.transforms.MelSpectrogram(sample_rate, n_fft, win_length, hop_length, n_mels, power=1,
center=True, pad_mode="reflect", normalized=False, norm=None, mel_scale="htk") with a periodic
Hann window, followed by log(clamp(·, 1e-5)) (official_spec §3.3). Frames = 1 + N // hop.
Output is channels-last: [B, frames, n_mels].
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from aomni_jax.config import MelConfig

LOG_FLOOR = 1e-5


def _hz_to_mel(hz: float) -> float:
  return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
  return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@functools.cache
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
  """[n_fft // 2 + 1, n_mels] HTK triangular filters, no area normalisation, 0 Hz .. Nyquist.

  Computed in float32 like torchaudio's `melscale_fbanks`, so the filters agree to an ulp.
  """
  freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1, dtype=np.float32)
  mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2, dtype=np.float32)
  edges = _mel_to_hz(mels).astype(np.float32)
  widths = edges[1:] - edges[:-1]
  slopes = edges[None, :] - freqs[:, None]
  down = -slopes[:, :-2] / widths[:-1]
  up = slopes[:, 2:] / widths[1:]
  return np.maximum(0.0, np.minimum(down, up)).astype(np.float32)


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
  """Periodic Hann window of `win_length`, zero-padded to `n_fft` in the centre (torch.stft)."""
  n = np.arange(win_length, dtype=np.float64)
  window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
  left = (n_fft - win_length) // 2
  return np.pad(window, (left, n_fft - win_length - left)).astype(np.float32)


def num_frames(num_samples: int, hop_length: int) -> int:
  return 1 + num_samples // hop_length


def stft(wave: jax.Array, n_fft: int, hop_length: int, win_length: int, *,
         center: bool = True) -> jax.Array:
  """Complex STFT of [B, N] audio (Hann window) → [B, frames, n_fft // 2 + 1].

  `center`: reflect-pad n_fft // 2 on both sides first (torch.stft's default), giving
  1 + N // hop frames; otherwise 1 + (N − n_fft) // hop frames from the raw signal.
  """
  wave = wave.astype(jnp.float32)
  if center:
    pad = n_fft // 2
    if wave.shape[-1] <= pad:
      raise ValueError(f"waveform has {wave.shape[-1]} samples; reflect padding needs more "
                       f"than {pad} (n_fft // 2)")
    wave = jnp.pad(wave, ((0, 0), (pad, pad)), mode="reflect")
  elif wave.shape[-1] < n_fft:
    raise ValueError(f"waveform has {wave.shape[-1]} samples, fewer than n_fft={n_fft}")
  frames = _frames(wave, n_fft, hop_length)
  return jnp.fft.rfft(frames * jnp.asarray(hann_window(win_length, n_fft)), axis=-1)


def _frames(wave: jax.Array, n_fft: int, hop: int) -> jax.Array:
  """[B, N] → [B, 1 + (N − n_fft) // hop, n_fft] overlapping frames.

  When the hop divides n_fft, the frames are n_fft / hop shifted views of hop-sized blocks
  (slices and a concat: cheap to compile and to differentiate); otherwise a gather.
  """
  count = 1 + (wave.shape[-1] - n_fft) // hop
  if n_fft % hop:
    starts = np.arange(count) * hop
    return wave[:, starts[:, None] + np.arange(n_fft)[None, :]]
  per_frame = n_fft // hop
  blocks = wave[:, :(count + per_frame - 1) * hop].reshape(wave.shape[0], -1, hop)
  return jnp.concatenate([blocks[:, i:i + count] for i in range(per_frame)], axis=-1)


def stft_magnitude(wave: jax.Array, n_fft: int, hop_length: int, win_length: int) -> jax.Array:
  """|STFT| of [B, N] audio with centred reflect padding → [B, frames, n_fft // 2 + 1]."""
  return jnp.abs(stft(wave, n_fft, hop_length, win_length))


@functools.partial(jax.jit, static_argnames=("cfg",))
def log_mel_spectrogram(wave: jax.Array, cfg: MelConfig = MelConfig()) -> jax.Array:
  """log(max(mel, 1e-5)) of [B, N] mono or [B, C, N] audio (channels are averaged first)."""
  if wave.ndim == 3:
    wave = jnp.mean(wave.astype(jnp.float32), axis=1)
  if wave.ndim != 2:
    raise ValueError(f"waveform must be [B, N] or [B, C, N], got shape {wave.shape}")
  magnitude = stft_magnitude(wave, cfg.n_fft, cfg.hop_length, cfg.win_length)
  filters = jnp.asarray(mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels))
  mel = jnp.einsum("bfk,km->bfm", magnitude, filters, precision=jax.lax.Precision.HIGHEST)
  return jnp.log(jnp.maximum(mel, LOG_FLOOR))
