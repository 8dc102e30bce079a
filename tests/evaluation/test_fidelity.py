"""Reference-based fidelity metrics on real speech: exact at the ends, monotone in between."""

import numpy as np
import pytest

from aomni_jax.evaluation import fidelity


def add_noise(clean: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
  noise = np.random.default_rng(seed).standard_normal(clean.shape)
  noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10**(snr_db / 10))
  return clean + noise


SNRS = (40.0, 20.0, 10.0, 0.0)


def test_si_sdr_is_very_high_for_a_copy_and_tracks_the_snr(speech_clip):
  clean, _ = speech_clip
  assert fidelity.si_sdr(clean, clean) > 80.0
  assert fidelity.si_sdr(clean, 0.3 * clean) > 80.0  # scale-invariant
  scores = [fidelity.si_sdr(clean, add_noise(clean, snr)) for snr in SNRS]
  assert np.all(np.diff(scores) < 0)
  # White noise is orthogonal to the speech, so SI-SDR equals the SNR to within 0.2 dB.
  np.testing.assert_allclose(scores, SNRS, atol=0.2)


@pytest.mark.parametrize("metric", [fidelity.log_spectral_distance, fidelity.mel_distance])
def test_spectral_distances_are_zero_for_a_copy_and_grow_with_noise(speech_clip, metric):
  clean, rate = speech_clip
  assert metric(clean, clean, rate) == pytest.approx(0.0, abs=1e-9)
  distances = [metric(clean, add_noise(clean, snr), rate) for snr in SNRS]
  assert distances[0] > 0.0 and np.all(np.diff(distances) > 0)


def test_stereo_is_scored_per_channel(speech_clip):
  clean, rate = speech_clip
  stereo_ref = np.stack([clean, clean])
  stereo_est = np.stack([add_noise(clean, 20.0, seed=1), add_noise(clean, 0.0, seed=2)])
  expected = np.mean([fidelity.si_sdr(clean, channel) for channel in stereo_est])
  assert fidelity.si_sdr(stereo_ref, stereo_est) == pytest.approx(expected, rel=1e-9)
  assert fidelity.mel_distance(stereo_ref, stereo_est, rate) > 0


def _bad_inputs(clean: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
  return {
      "empty": (clean, np.zeros(0), 16000),
      "silent": (clean, np.zeros_like(clean), 16000),
      "too short": (clean[:400], clean[:400], 16000),
      "NaN": (clean, np.where(np.arange(clean.size) == 5, np.nan, clean), 16000),
      "differ in shape": (clean, clean[:-10], 16000),
      "sample rate": (clean, clean, 400),
  }


@pytest.mark.parametrize("problem", ["empty", "silent", "too short", "NaN", "differ in shape",
                                     "sample rate"])
def test_bad_input_raises_a_clear_error_instead_of_nan(speech_clip, problem):
  reference, estimate, rate = _bad_inputs(speech_clip[0])[problem]
  for metric in (fidelity.log_spectral_distance, fidelity.mel_distance):
    with pytest.raises(fidelity.MetricInputError, match=problem):
      metric(reference, estimate, rate)
  if problem != "sample rate":
    with pytest.raises(ValueError, match=problem):
      fidelity.si_sdr(reference, estimate)
