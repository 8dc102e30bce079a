"""FAD and KID: exact against the textbook formula, and ordered sensibly on real recordings."""

import numpy as np
import pytest
import scipy.linalg
import scipy.signal

from aomni_jax.evaluation import distribution
from aomni_jax.evaluation import fidelity


def textbook_frechet(a, b):
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root = scipy.linalg.sqrtm(cov_a @ cov_b).real
  return np.sum((a.mean(0) - b.mean(0))**2) + np.trace(cov_a + cov_b - 2 * root)


@pytest.mark.parametrize("n,dim", [(60, 8), (12, 16), (300, 32)])  # n > dim and n < dim
def test_frechet_distance_matches_the_sqrtm_formula(n, dim):
  rng = np.random.default_rng(n)
  a = rng.standard_normal((n, dim))
  b = rng.standard_normal((n + 5, dim)) @ rng.standard_normal((dim, dim)) * 0.5 + 1.0
  assert distribution.frechet_distance(a, b) == pytest.approx(textbook_frechet(a, b), rel=1e-7)
  assert distribution.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_kid_is_unbiased_for_samples_of_one_distribution():
  rng = np.random.default_rng(0)
  same = [distribution.kernel_distance(rng.standard_normal((20, 16)), rng.standard_normal((20, 16)))
          for _ in range(200)]
  shifted = distribution.kernel_distance(rng.standard_normal((20, 16)),
                                         rng.standard_normal((20, 16)) + 0.5)
  # Mean over 200 draws is 0 within 3 standard errors; a 0.5 shift is far outside that.
  assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))
  assert shifted > np.mean(same) + 5 * np.std(same)


@pytest.mark.parametrize("a,b,problem", [
    (np.zeros((1, 4)), np.zeros((5, 4)), "at least 2"),
    (np.zeros((5, 4)), np.zeros((5, 3)), "sizes differ"),
    (np.full((5, 4), np.nan), np.zeros((5, 4)), "NaN"),
])
def test_unusable_embeddings_raise(a, b, problem):
  for metric in (distribution.frechet_distance, distribution.kernel_distance):
    with pytest.raises(fidelity.MetricInputError, match=problem):
      metric(a, b)


def test_fad_and_kid_order_real_split_lowpassed_and_noise(sound_pool, pool_outputs, yamnet_model):
  """Two random halves of the real recordings are closer than one half and the other half
  low-passed at 1 kHz, which is closer than noise with the same level."""
  _, waveforms = sound_pool
  order = np.random.default_rng(0).permutation(len(waveforms))
  half_a, half_b = order[::2], order[1::2]
  lowpass = scipy.signal.butter(8, 1000, fs=16000, output="sos")
  rng = np.random.default_rng(1)
  altered = yamnet_model(
      [scipy.signal.sosfilt(lowpass, waveforms[i]) for i in half_b] +
      [rng.standard_normal(len(waveforms[i])) * np.std(waveforms[i]) for i in half_b])
  sets = {"a": [pool_outputs[i] for i in half_a], "b": [pool_outputs[i] for i in half_b],
          "lowpass": altered[:len(half_b)], "noise": altered[len(half_b):]}
  patches = {k: np.concatenate([o.embeddings for o in v]) for k, v in sets.items()}
  clips = {k: np.stack([o.embeddings.mean(0) for o in v]) for k, v in sets.items()}
  fad = {k: distribution.frechet_distance(patches["a"], patches[k]) for k in sets}
  kid = {k: distribution.kernel_distance(clips["a"], clips[k]) for k in sets}
  print("FAD", fad, "KID", kid)
  assert fad["b"] < 0.9 * fad["lowpass"] and 2 * fad["lowpass"] < fad["noise"]
  assert kid["b"] < 0.25 * kid["lowpass"] and 2 * kid["lowpass"] < kid["noise"]
