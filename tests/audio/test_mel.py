"""Log-mel: the golden fixture (torchaudio's numbers) and the input checks."""

import jax.numpy as jnp
import numpy as np
import pytest

from aomni_jax.audio.mel import log_mel_spectrogram, mel_filterbank, num_frames
from aomni_jax.config import MelConfig
from aomni_jax.parity import mel as mel_parity


def test_golden_mel_fixture(golden_dir):
  results = mel_parity.run(golden_dir / "mel")
  assert {r.name for r in results} >= {"mono_logmel", "cond_out_no_mask", "mel_filterbank"}
  failed = [r.line() for r in results if not r.passed]
  assert not failed, failed


def test_batched_shapes_and_channel_mean():
  cfg = MelConfig()
  rng = np.random.default_rng(0)
  stereo = rng.uniform(-0.5, 0.5, (3, 2, 2000)).astype(np.float32)
  out = log_mel_spectrogram(jnp.asarray(stereo), cfg)
  assert out.shape == (3, num_frames(2000, cfg.hop_length), cfg.n_mels)
  mono = log_mel_spectrogram(jnp.asarray(stereo.mean(axis=1)), cfg)
  np.testing.assert_allclose(out, mono, atol=1e-5)


def test_silence_is_the_log_floor():
  out = log_mel_spectrogram(jnp.zeros((1, 4096)), MelConfig())
  np.testing.assert_allclose(out, np.log(1e-5), rtol=1e-6)


def test_filterbank_triangles():
  fb = mel_filterbank(44100, 1024, 100)
  assert fb.shape == (513, 100)
  assert fb.min() == 0.0 and fb.max() <= 1.0
  assert np.all(fb.sum(axis=0) > 0)  # every filter covers at least one bin


def test_too_short_and_bad_rank():
  with pytest.raises(ValueError, match="reflect padding"):
    log_mel_spectrogram(jnp.zeros((1, 512)), MelConfig())
  with pytest.raises(ValueError, match=r"\[B, N\] or \[B, C, N\]"):
    log_mel_spectrogram(jnp.zeros((4096,)), MelConfig())
