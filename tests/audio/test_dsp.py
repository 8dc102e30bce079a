"""Signal maths: pitch shift by measured F0, stretch by measured duration, resampling, loudness."""

import numpy as np
import pytest

from aomni_jax.audio import dsp

RATE = 44100


def tone(f0: float, seconds: float, rate: int = RATE) -> np.ndarray:
  t = np.arange(int(seconds * rate)) / rate
  return (0.2 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3)))[None]


def measured_f0(audio: np.ndarray, rate: int = RATE, low: float = 60, high: float = 600) -> float:
  """Strongest spectral peak in [low, high] Hz with a zero-padded FFT (0.04 Hz resolution)."""
  mono = np.atleast_2d(audio).mean(axis=0)
  mono = mono[len(mono) // 10:-len(mono) // 10]  # skip edge transients
  n = 1 << 20
  spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono)), n))
  freqs = np.fft.rfftfreq(n, 1 / rate)
  band = (freqs > low) & (freqs < high)
  return float(freqs[band][np.argmax(spectrum[band])])


def burst_centres(audio: np.ndarray, rate: int = RATE) -> np.ndarray:
  """Energy centroids (s) of the separate loud regions: phase-vocoder smearing is symmetric
  around them, so distances between centroids measure the time scale exactly."""
  power = np.square(np.atleast_2d(audio).mean(axis=0))
  envelope = np.convolve(power, np.ones(rate // 100) / (rate // 100), mode="same")
  loud = envelope > envelope.max() * 0.01
  edges = np.flatnonzero(np.diff(loud.astype(int)))
  regions = zip(edges[::2] + 1, edges[1::2] + 1)
  return np.array([np.average(np.arange(a, b), weights=power[a:b]) / rate for a, b in regions])


@pytest.mark.parametrize("semitones", [-3.0, -1.3, 0.7, 3.0])
def test_pitch_shift_moves_f0_by_the_ratio_and_keeps_duration(semitones):
  source = tone(220.0, 1.0)
  shifted = dsp.pitch_shift(source, semitones)
  ratio = measured_f0(shifted) / measured_f0(source)
  assert ratio == pytest.approx(2 ** (semitones / 12), rel=2e-3)  # 0.035 semitone
  assert shifted.shape == source.shape


@pytest.mark.parametrize("factor", [0.8, 0.93, 1.2])
def test_time_stretch_scales_duration_and_keeps_f0(factor):
  gap = np.zeros((1, RATE // 2))
  bursts = np.concatenate([gap, tone(330.0, 0.4), gap, tone(330.0, 0.4), gap], axis=1)
  stretched = dsp.time_stretch(bursts, factor)
  assert stretched.shape[-1] == round(bursts.shape[-1] * factor)
  source_centres, stretched_centres = burst_centres(bursts), burst_centres(stretched)
  assert len(source_centres) == len(stretched_centres) == 2
  assert np.diff(stretched_centres)[0] / np.diff(source_centres)[0] == pytest.approx(factor,
                                                                                     rel=0.01)
  assert measured_f0(tone_part(stretched, stretched_centres[0])) == pytest.approx(330.0, rel=2e-3)


def tone_part(audio: np.ndarray, centre: float, half_width: float = 0.12) -> np.ndarray:
  start = int((centre - half_width) * RATE)
  return audio[:, start:start + int(2 * half_width * RATE)]


def test_resample_keeps_frequency_and_duration():
  source = tone(1000.0, 0.5, rate=48000)
  out = dsp.resample(source, 48000, RATE)
  assert out.shape[-1] == int(0.5 * RATE)
  assert measured_f0(out, low=900, high=1100) == pytest.approx(1000.0, rel=1e-3)


def test_loudness_of_a_full_scale_997hz_sine_is_minus_3_lufs():
  # BS.1770 reference: a 0 dBFS 997 Hz sine on one channel reads -3.01 LKFS.
  t = np.arange(3 * RATE) / RATE
  sine = np.sin(2 * np.pi * 997 * t)[None]
  assert dsp.loudness_lufs(sine, RATE) == pytest.approx(-3.01, abs=0.05)
  short = sine[:, :int(0.2 * RATE)]  # shorter than one gating block: still measured
  assert dsp.loudness_lufs(short, RATE) == pytest.approx(-3.01, abs=0.1)


def test_gain_to_loudness_reaches_the_target():
  audio = 0.01 * np.random.default_rng(0).standard_normal((2, 2 * RATE))
  gain = dsp.gain_to_loudness(audio, RATE, -23.0)
  assert dsp.loudness_lufs(audio * gain, RATE) == pytest.approx(-23.0, abs=0.05)


def test_snr_db_of_known_amplitudes():
  signal = np.ones((1, 100))
  assert dsp.snr_db(signal, 0.1 * signal) == pytest.approx(20.0)


def test_channel_mapping_and_fit_length():
  mono = np.arange(5.0)[None]
  assert dsp.to_channels(mono, 2).shape == (2, 5)
  assert np.allclose(dsp.to_channels(np.stack([mono[0], -mono[0]]), 1), 0)
  assert dsp.fit_length(mono, 3).shape == (1, 3)
  assert np.array_equal(dsp.fit_length(mono, 7)[0], [0, 1, 2, 3, 4, 0, 0])
