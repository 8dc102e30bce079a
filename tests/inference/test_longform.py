"""Long-form windows: plan, crossfade, inpainting, and continuous seams on a model built for it.

The model here is exact rather than trained: for latents drawn from a smooth Gaussian process
(along time, per channel), the rectified-flow velocity E[ε − x₀ | x_t] has a closed form. With it
the sampler is a real generative model of smooth signals, so a seam shows up as a jump in the
frame-to-frame change (the latent analogue of spectral flux).
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aomni_jax.inference import longform
from aomni_jax.layers.linear import Buffer
from aomni_jax.models.dit import DiTConditioning
from aomni_jax.sampling import sample

WINDOW, OVERLAP, CHANNELS, STEPS = 64, 16, 4, 40
NO_CONDITIONING = DiTConditioning(None, None, None)


class SmoothPrior(nnx.Module):
  """The exact flow velocity for x₀ ~ GP(0, k), k(i, j) = exp(−(i − j)² / 2ℓ²), per channel.

  x_t = (1 − t)·x₀ + t·ε, so E[x₀ | x_t] = (1 − t)·K((1 − t)²K + t²I)⁻¹x_t (diagonal in K's
  eigenbasis) and v = (x_t − E[x₀ | x_t]) / t. Same call signature as the DiT's sampler path.
  """

  def __init__(self, length: int, scale: float):
    i = np.arange(length)
    k = np.exp(-0.5 * ((i[:, None] - i[None]) / scale) ** 2) + 1e-5 * np.eye(length)
    eigenvalues, basis = np.linalg.eigh(k)
    self.eigenvalues = Buffer(jnp.asarray(eigenvalues, jnp.float32))
    self.basis = Buffer(jnp.asarray(basis, jnp.float32))

  def unstack_layers(self, context):
    return None

  def forward(self, x, t, context, global_cond, layers=None, **unused):
    t = t[:, None, None]
    lam, u = self.eigenvalues[...][None, :, None], self.basis[...]
    coefficients = jnp.einsum("ji,bjc->bic", u, x)
    x0 = jnp.einsum("ij,bjc->bic", u, (1 - t) * lam / ((1 - t) ** 2 * lam + t ** 2) * coefficients)
    return (x - x0) / t


def _windows(num_frames: int, seed: int, inpaint: bool = True):
  """Windows generated one after another (each conditioned on the last) and their plan."""
  graphdef, state = nnx.split(SmoothPrior(WINDOW, scale=6.0))
  plan = longform.plan_windows(num_frames, WINDOW, 1, OVERLAP)
  rng = np.random.default_rng(seed)
  windows, previous = [], None
  for _ in range(plan.count):
    noise = jnp.asarray(rng.standard_normal((1, WINDOW, CHANNELS)), jnp.float32)
    known = mask = None
    if previous is not None and inpaint:
      known, mask = longform.known_frames(previous, plan)
    previous = np.asarray(sample(graphdef, state, noise, NO_CONDITIONING, steps=STEPS,
                                 cfg_scale=1.0, known=known, known_mask=mask))
    windows.append(previous[0])
  return windows, plan


def _flux(x: np.ndarray) -> np.ndarray:
  """Frame-to-frame change |x[n+1] − x[n]| over channels (latent 'spectral flux')."""
  return np.linalg.norm(np.diff(x, axis=0), axis=-1)


def _seam_mask(plan: longform.WindowPlan, length: int) -> np.ndarray:
  """The crossfades and the first new frames of every window."""
  seams = np.zeros(length, bool)
  for k in range(1, plan.count):
    seams[plan.start(k) - 2:plan.start(k) + OVERLAP + 2] = True
  return seams


def test_seams_are_as_smooth_as_the_inside_of_a_window():
  at_seams, inside, agreement = [], [], []
  for seed in range(4):
    windows, plan = _windows(250, seed)
    assert plan.count == 5
    clip = longform.join(windows, plan, 1)
    flux, seams = _flux(clip), _seam_mask(plan, 249)
    at_seams.append(flux[seams])
    inside.append(flux[~seams])
    agreement += [longform.correlation(a[plan.hop:], b[:OVERLAP])
                  for a, b in zip(windows, windows[1:])]
  # Stationary flux: the seams are no rougher than the windows (mean over 16 seams, ±20 %).
  assert np.mean(np.concatenate(at_seams)) <= 1.2 * np.mean(np.concatenate(inside))
  assert min(agreement) > 0.9  # each window continues the last one: the crossfade mixes alike
  # Controls: without inpainting the windows are unrelated, and butting them together without
  # a crossfade leaves a jump that the flux measure sees.
  windows, plan = _windows(250, 0, inpaint=False)
  assert max(longform.correlation(a[plan.hop:], b[:OVERLAP])
             for a, b in zip(windows, windows[1:])) < 0.6
  cut = np.concatenate([windows[0][:plan.hop], windows[1]])
  assert _flux(cut)[plan.hop - 1] > 3 * np.mean(np.concatenate(inside))


def test_inpainting_follows_the_known_frames_and_no_mask_changes_nothing():
  graphdef, state = nnx.split(SmoothPrior(WINDOW, scale=6.0))
  rng = np.random.default_rng(1)
  noise = jnp.asarray(rng.standard_normal((2, WINDOW, CHANNELS)), jnp.float32)
  known = np.asarray(sample(graphdef, state, jnp.asarray(rng.standard_normal(
      (2, WINDOW, CHANNELS)), jnp.float32), NO_CONDITIONING, steps=STEPS, cfg_scale=1.0))
  mask = np.zeros((2, WINDOW, 1), bool)
  plain = np.asarray(sample(graphdef, state, noise, NO_CONDITIONING, steps=STEPS, cfg_scale=1.0))
  unmasked = sample(graphdef, state, noise, NO_CONDITIONING, steps=STEPS, cfg_scale=1.0,
                    known=known, known_mask=mask)
  np.testing.assert_array_equal(np.asarray(unmasked), plain)
  mask[:, :OVERLAP] = True
  out = np.asarray(sample(graphdef, state, noise, NO_CONDITIONING, steps=STEPS, cfg_scale=1.0,
                          known=known, known_mask=mask))
  error = np.abs(out[:, :OVERLAP] - known[:, :OVERLAP]).max()
  assert error < 0.1 * np.abs(known).max()  # harmonised, not pasted: close to the known frames
  assert np.abs(plain[:, :OVERLAP] - known[:, :OVERLAP]).max() > 5 * error
  with pytest.raises(ValueError, match="both known and known_mask"):
    sample(graphdef, state, noise, NO_CONDITIONING, steps=2, cfg_scale=1.0, known=known)


def test_plan_covers_the_clip_and_clamps_the_overlap():
  assert longform.plan_windows(236 * 2048, window=236, ratio=2048, overlap=43).count == 1
  assert longform.plan_windows(236 * 2048 + 1, window=236, ratio=2048, overlap=43).count == 2
  plan = longform.plan_windows(600 * 44100, window=236, ratio=2048, overlap=43)
  last_end = (plan.start(plan.count - 1) + plan.window) * 2048
  assert last_end >= 600 * 44100 > (plan.start(plan.count - 2) + plan.window) * 2048
  assert longform.plan_windows(10_000, window=24, ratio=32, overlap=1000).overlap == 12


def test_equal_power_crossfade_keeps_the_power_of_uncorrelated_signals():
  fade_out, fade_in = longform.equal_power_fades(4096)
  np.testing.assert_allclose(fade_out ** 2 + fade_in ** 2, 1.0, atol=1e-6)
  plan = longform.plan_windows(400, window=150, ratio=2, overlap=50)  # windows of 300 samples
  assert plan.count == 2
  rng = np.random.default_rng(0)
  windows = [rng.standard_normal((300, 2)).astype(np.float32) for _ in range(plan.count)]
  joined = longform.join(windows, plan, 2)
  assert joined.shape == (400, 2)
  np.testing.assert_array_equal(joined[:200], windows[0][:200])  # before the crossfade
  np.testing.assert_array_equal(joined[300:], windows[1][100:200])  # after it
  middle = joined[200:300]
  assert abs(np.mean(middle ** 2) / np.mean(windows[0][200:] ** 2) - 1) < 0.3
