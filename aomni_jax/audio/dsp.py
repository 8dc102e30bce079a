"""Signal utilities for data synthesis: resampling, loudness, SNR, pitch shift and time stretch.

All functions take and return float arrays shaped [channels, frames] (a 1-D array is treated as
one channel where noted), so stereo and mono sources go through the same code.
"""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import scipy.signal

# Floor for power ratios, so silent signals give a finite (very low) level instead of -inf.
_TINY_POWER = 1e-20
# BS.1770 gating block; shorter clips are measured as one block.
_LOUDNESS_BLOCK_SECONDS = 0.4


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
  """Polyphase resampling along the last axis (exact rational ratio, anti-aliased)."""
  if from_rate == to_rate:
    return audio.astype(np.float32, copy=False)
  divisor = math.gcd(from_rate, to_rate)
  out = scipy.signal.resample_poly(audio, to_rate // divisor, from_rate // divisor, axis=-1)
  return out.astype(np.float32)


def to_channels(audio: np.ndarray, channels: int) -> np.ndarray:
  """Downmixes to mono (mean) or upmixes mono by copying; other layouts must already match."""
  audio = np.atleast_2d(audio)
  if audio.shape[0] == channels:
    return audio
  if channels == 1:
    return audio.mean(axis=0, keepdims=True)
  if audio.shape[0] == 1:
    return np.repeat(audio, channels, axis=0)
  raise ValueError(f"cannot map {audio.shape[0]} channels to {channels}")


def fit_length(audio: np.ndarray, frames: int) -> np.ndarray:
  """Crops or zero-pads the end of the last axis to exactly `frames`."""
  if audio.shape[-1] >= frames:
    return audio[..., :frames]
  pad = [(0, 0)] * (audio.ndim - 1) + [(0, frames - audio.shape[-1])]
  return np.pad(audio, pad)


def loudness_lufs(audio: np.ndarray, rate: int) -> float:
  """Integrated loudness (ITU-R BS.1770-4, K-weighted and gated) in LUFS; -inf for silence."""
  audio = np.atleast_2d(audio)
  block = min(_LOUDNESS_BLOCK_SECONDS, audio.shape[-1] / rate)
  meter = pyloudnorm.Meter(rate, block_size=block)
  return float(meter.integrated_loudness(audio.T.astype(np.float64)))


def gain_to_loudness(audio: np.ndarray, rate: int, target_lufs: float) -> float:
  """Linear gain that brings `audio` to `target_lufs` (1.0 for silence, which has no loudness)."""
  level = loudness_lufs(audio, rate)
  if not np.isfinite(level):
    return 1.0
  return float(10.0 ** ((target_lufs - level) / 20.0))


def power_db(audio: np.ndarray) -> float:
  """Mean power over all samples in dB (relative to full-scale square wave = 0 dB)."""
  return float(10.0 * np.log10(np.mean(np.square(audio, dtype=np.float64)) + _TINY_POWER))


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
  """Power ratio of two equally shaped arrays, in dB."""
  return power_db(signal) - power_db(noise)


def pitch_shift(audio: np.ndarray, semitones: float, n_fft: int = 2048) -> np.ndarray:
  """Shifts pitch by `semitones` keeping duration: stretch by the ratio, then resample back."""
  ratio = 2.0 ** (semitones / 12.0)
  if abs(ratio - 1.0) < 1e-6:
    return audio.astype(np.float32, copy=False)
  stretched = time_stretch(audio, ratio, n_fft=n_fft)
  frames = audio.shape[-1]
  # Reading the stretched signal `ratio` times faster restores the duration and raises the pitch.
  positions = np.arange(frames) * (stretched.shape[-1] / frames)
  return _interpolate_band_limited(stretched, positions, ratio)


def _interpolate_band_limited(audio: np.ndarray, positions: np.ndarray,
                              speedup: float) -> np.ndarray:
  """Samples `audio` at fractional `positions`, low-passing first when speeding up (anti-alias)."""
  if speedup > 1.0:
    sos = scipy.signal.butter(8, 0.95 / speedup, output="sos")
    audio = scipy.signal.sosfiltfilt(sos, audio, axis=-1)
  grid = np.arange(audio.shape[-1])
  return np.stack([np.interp(positions, grid, channel) for channel in audio]).astype(np.float32)


def time_stretch(audio: np.ndarray, duration_factor: float, n_fft: int = 2048) -> np.ndarray:
  """Phase-vocoder time stretch: output lasts `duration_factor` times as long, same pitch.

  Analysis frames are read at hop H/duration_factor and written at hop H. Spectral peaks advance
  their phase by their measured instantaneous frequency; the other bins are phase-locked to their
  nearest peak (Laroche & Dolson's identity locking), which keeps partials coherent across bins
  and avoids the level loss and "phasiness" of a plain vocoder.
  """
  audio = np.atleast_2d(audio).astype(np.float32)
  if abs(duration_factor - 1.0) < 1e-6:
    return audio
  hop = n_fft // 4
  window = scipy.signal.windows.hann(n_fft, sym=False)
  padded = np.pad(audio, [(0, 0), (n_fft, n_fft + hop)])
  steps = None
  out = []
  for channel in padded:
    spectra = _stft(channel, window, hop)  # [T, F]
    steps = np.arange(0.0, len(spectra) - 1, 1.0 / duration_factor)
    out.append(_istft(_stretch_spectra(spectra, steps, hop, n_fft), window, hop))
  start = int(round(n_fft * duration_factor))
  frames_out = int(round(audio.shape[-1] * duration_factor))
  return np.stack(out)[:, start:start + frames_out].astype(np.float32)


def _stretch_spectra(spectra: np.ndarray, steps: np.ndarray, hop: int, n_fft: int) -> np.ndarray:
  bins = np.arange(spectra.shape[1])
  expected_advance = 2.0 * np.pi * hop * bins / n_fft
  phase = np.angle(spectra[0])
  out = np.empty((len(steps), spectra.shape[1]), np.complex128)
  for index, step in enumerate(steps):
    left = int(step)
    frac = step - left
    magnitude = (1 - frac) * np.abs(spectra[left]) + frac * np.abs(spectra[left + 1])
    analysis_phase = np.angle(spectra[left])
    out[index] = magnitude * np.exp(1j * phase)
    delta = np.angle(spectra[left + 1]) - analysis_phase - expected_advance
    delta -= 2.0 * np.pi * np.round(delta / (2.0 * np.pi))
    advanced = phase + expected_advance + delta
    # Lock every bin to the nearest peak of the next frame's magnitude.
    next_magnitude = np.abs(spectra[left + 1])
    is_peak = np.r_[False, (next_magnitude[1:-1] > next_magnitude[:-2]) &
                    (next_magnitude[1:-1] >= next_magnitude[2:]), False]
    peaks = np.flatnonzero(is_peak)
    if len(peaks) == 0:
      phase = advanced
      continue
    boundaries = (peaks[1:] + peaks[:-1]) / 2
    owner = peaks[np.searchsorted(boundaries, bins)]
    next_phase = np.angle(spectra[left + 1])
    phase = advanced[owner] + next_phase - next_phase[owner]
  return out


def _stft(signal: np.ndarray, window: np.ndarray, hop: int) -> np.ndarray:
  n_fft = len(window)
  count = 1 + (len(signal) - n_fft) // hop
  frames = np.lib.stride_tricks.sliding_window_view(signal, n_fft)[::hop][:count]
  return np.fft.rfft(frames * window, axis=-1)


def _istft(spectra: np.ndarray, window: np.ndarray, hop: int) -> np.ndarray:
  n_fft = len(window)
  frames = np.fft.irfft(spectra, n=n_fft, axis=-1) * window
  length = n_fft + hop * (len(frames) - 1)
  out = np.zeros(length)
  norm = np.zeros(length)
  for index, frame in enumerate(frames):
    out[index * hop:index * hop + n_fft] += frame
    norm[index * hop:index * hop + n_fft] += window**2
  return out / np.maximum(norm, 1e-8)
