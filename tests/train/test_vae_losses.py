"""The VAE's training losses against closed forms and an independent numpy reference."""

import dataclasses

import jax
import numpy as np
import pytest
import scipy.signal

from aomni_jax.config import AutoencoderConfig
from aomni_jax.train.losses import adversarial, stft

RATE = 44100
# Jitted whole: one compile per shape instead of one per primitive.
_stft_loss = jax.jit(stft.stft_loss, static_argnums=(2, 3))
_reconstruction_loss = jax.jit(stft.reconstruction_loss, static_argnums=(2, 3))


def _numpy_stft_loss(estimate, target, n_fft, hop):
  """auraloss's STFTLoss (spectral convergence + log-magnitude L1), written out in numpy."""

  def magnitude(x):
    padded = np.pad(x, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[:, ::hop]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    spectrum = np.fft.rfft(frames * window, axis=-1)
    return np.sqrt(np.maximum(spectrum.real**2 + spectrum.imag**2, 1e-8))

  x, y = magnitude(estimate), magnitude(target)
  return np.linalg.norm(y - x) / np.linalg.norm(y) + np.mean(np.abs(np.log(x) - np.log(y)))


def test_stft_loss_matches_numpy_reference():
  rng = np.random.default_rng(0)
  target = rng.standard_normal((3, 2048)).astype(np.float32)
  estimate = (target + 0.3 * rng.standard_normal((3, 2048))).astype(np.float32)
  for n_fft, hop in ((256, 64), (64, 16)):
    ours = float(_stft_loss(estimate, target, n_fft, hop))
    assert ours == pytest.approx(_numpy_stft_loss(estimate, target, n_fft, hop), rel=1e-4)


@pytest.mark.parametrize("weighting", [False, True])
def test_half_amplitude_gives_closed_form(weighting):
  """Estimate = target / 2: |Y| = 2|X| in every bin, so each resolution gives exactly
  SC = ‖X‖/‖2X‖ = 1/2 plus log-L1 = ln 2, for mid and side alike (the FIR is linear)."""
  rng = np.random.default_rng(1)
  target = rng.standard_normal((2, 4096, 2)).astype(np.float32)
  cfg = AutoencoderConfig(stft_fft_sizes=(512, 128, 32), stft_perceptual_weighting=weighting,
                          stft_sum_weight=1.0, stft_diff_weight=0.5)
  loss = float(_reconstruction_loss(target / 2, target, cfg, RATE))
  assert loss == pytest.approx((0.5 + np.log(2)) * (1.0 + 0.5) / 2, rel=1e-4)
  assert float(_reconstruction_loss(target, target, cfg, RATE)) == pytest.approx(0, abs=1e-6)
  channels = dataclasses.replace(cfg, stft_stereo="channels")
  assert float(_reconstruction_loss(target / 2, target, channels, RATE)) == pytest.approx(
      0.5 + np.log(2), rel=1e-4)


def test_a_weighting_fir_follows_the_curve():
  """0 dB at 1 kHz (the A-curve's reference), a strong cut at 50 Hz, a few dB down at 10 kHz."""
  freqs, response = scipy.signal.freqz(stft.a_weighting_taps(RATE), worN=[50, 1000, 10000],
                                       fs=RATE)
  db = 20 * np.log10(np.abs(response))
  assert abs(db[1]) < 1.0
  assert db[0] < -15  # the analog curve is −30 dB; 101 taps cannot resolve 50 Hz fully
  assert -6 < db[2] < -1


def test_hinge_losses_and_feature_matching_by_hand():
  """One scale, logits and features chosen so each term is known."""
  real = (np.array([2.0, 0.5]), [np.array([1.0, 3.0])])
  fake = (np.array([-2.0, 0.0]), [np.array([0.0, 1.0])])
  losses = adversarial.adversarial_losses(lambda x: [real] if x == "real" else [fake],
                                          "real", "fake")
  assert float(losses.discriminator) == pytest.approx(np.mean([0, 0.5]) + np.mean([0, 1]))
  assert float(losses.generator) == pytest.approx(1.0)
  assert float(losses.feature_matching) == pytest.approx(1.5)
