"""Reference-based fidelity of an audio clip: SI-SDR, log-spectral distance, multi-resolution mel.

Used where ground truth exists (editing targets, VAE reconstructions). Every function takes a
reference and an estimate of the same shape, [frames] or [channels, frames], scores each channel
and averages. Inputs that would give NaN or a meaningless number (empty, silent, too short,
non-finite, mismatched shapes, an implausible sample rate) raise `MetricInputError` naming the
problem instead.
"""

from __future__ import annotations

import numpy as np

from aomni_jax.audio import mel

# Below this peak (-80 dBFS) a clip is treated as silent: its SI-SDR or spectrum is meaningless.
SILENCE_PEAK = 1e-4
# Shortest clip worth scoring; also keeps every STFT resolution below at >= 2 frames.
MIN_SECONDS = 0.1
# SI-SDR takes no rate; 1600 frames is MIN_SECONDS at 16 kHz, the lowest rate we evaluate.
MIN_FRAMES = 1600
MIN_RATE, MAX_RATE = 8000, 192000
# Power floor for log spectra (-100 dB), so near-empty bins give a finite, bounded log.
_POWER_FLOOR = 1e-10
_LSD_FFT, _LSD_HOP = 2048, 512
# (n_fft, n_mels) per resolution, hop n_fft // 4: short windows catch transients, long ones pitch.
MEL_RESOLUTIONS = ((512, 40), (1024, 80), (2048, 128))
_MEL_LOG_FLOOR = 1e-5


class MetricInputError(ValueError):
  """An input a metric cannot score; the message names the clip and the problem."""


def check_clip(audio: np.ndarray, name: str, sample_rate: int | None = None) -> np.ndarray:
  """Returns `audio` as float64 [channels, frames], or raises `MetricInputError` saying why not."""
  audio = np.asarray(audio)
  if audio.ndim not in (1, 2):
    raise MetricInputError(f"{name}: expected [frames] or [channels, frames], got shape "
                           f"{audio.shape}")
  audio = np.atleast_2d(audio).astype(np.float64)
  if audio.size == 0:
    raise MetricInputError(f"{name}: empty audio")
  if not np.all(np.isfinite(audio)):
    raise MetricInputError(f"{name}: contains NaN or inf samples")
  if sample_rate is not None:
    check_rate(sample_rate)
  min_frames = MIN_FRAMES if sample_rate is None else int(MIN_SECONDS * sample_rate)
  if audio.shape[-1] < min_frames:
    raise MetricInputError(f"{name}: too short ({audio.shape[-1]} frames; need >= {min_frames})")
  if np.max(np.abs(audio)) < SILENCE_PEAK:
    raise MetricInputError(f"{name}: silent (peak below -80 dBFS)")
  return audio


def check_rate(sample_rate: int) -> None:
  if not isinstance(sample_rate, (int, np.integer)) or not MIN_RATE <= sample_rate <= MAX_RATE:
    raise MetricInputError(f"sample rate {sample_rate!r} is not an integer in "
                           f"[{MIN_RATE}, {MAX_RATE}] Hz")


def check_pair(reference: np.ndarray, estimate: np.ndarray,
               sample_rate: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Validates both clips and that they line up sample for sample."""
  reference = check_clip(reference, "reference", sample_rate)
  estimate = check_clip(estimate, "estimate", sample_rate)
  if reference.shape != estimate.shape:
    raise MetricInputError(f"reference {reference.shape} and estimate {estimate.shape} differ in "
                           "shape; crop or resample them to the same rate and length first")
  return reference, estimate


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
  """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), channel mean.

  The reference is scaled by its least-squares gain onto the estimate, so loudness differences
  are not errors; a perfect copy gives a very large (finite) value.
  """
  reference, estimate = check_pair(reference, estimate)
  reference = reference - reference.mean(axis=-1, keepdims=True)
  estimate = estimate - estimate.mean(axis=-1, keepdims=True)
  gain = np.sum(reference * estimate, axis=-1, keepdims=True) / np.sum(reference**2, axis=-1,
                                                                      keepdims=True)
  target = gain * reference
  residual = estimate - target
  ratio = (np.sum(target**2, axis=-1) + _POWER_FLOOR) / (np.sum(residual**2, axis=-1) +
                                                         _POWER_FLOOR)
  return float(np.mean(10.0 * np.log10(ratio)))


def log_spectral_distance(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
  """Per-frame RMS (over frequency) of the log10 power-spectrum difference, averaged over frames.

  The usual bandwidth-extension definition (2048-point STFT, hop 512); 0 for identical clips.
  """
  reference, estimate = check_pair(reference, estimate, sample_rate)
  ref_log = np.log10(np.maximum(_power_spectrogram(reference, _LSD_FFT, _LSD_HOP), _POWER_FLOOR))
  est_log = np.log10(np.maximum(_power_spectrogram(estimate, _LSD_FFT, _LSD_HOP), _POWER_FLOOR))
  per_frame = np.sqrt(np.mean((ref_log - est_log)**2, axis=-1))
  return float(np.mean(per_frame))


def mel_distance(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
  """Multi-resolution mel distance: mean |log10 mel magnitude| difference over 3 resolutions.

  The reconstruction term of codec papers (DAC-style) with 512/1024/2048-point windows; it
  weighs errors by perceived pitch, so it tracks timbre changes that SI-SDR ignores.
  """
  reference, estimate = check_pair(reference, estimate, sample_rate)
  distances = []
  for n_fft, n_mels in MEL_RESOLUTIONS:
    filters = mel.mel_filterbank(sample_rate, n_fft, n_mels).astype(np.float64)
    hop = n_fft // 4
    ref_mel = np.sqrt(_power_spectrogram(reference, n_fft, hop)) @ filters
    est_mel = np.sqrt(_power_spectrogram(estimate, n_fft, hop)) @ filters
    difference = (np.log10(np.maximum(ref_mel, _MEL_LOG_FLOOR)) -
                  np.log10(np.maximum(est_mel, _MEL_LOG_FLOOR)))
    distances.append(np.mean(np.abs(difference)))
  return float(np.mean(distances))


def _power_spectrogram(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
  """|STFT|^2 of [C, N] audio, periodic Hann, centred with reflect padding → [C, frames, bins]."""
  pad = n_fft // 2
  mode = "reflect" if audio.shape[-1] > pad else "constant"
  padded = np.pad(audio, [(0, 0), (pad, pad)], mode=mode)
  frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[:, ::hop]
  window = mel.hann_window(n_fft, n_fft).astype(np.float64)
  return np.abs(np.fft.rfft(frames * window, axis=-1))**2
