"""Clip checks: each failure mode is named, good audio passes."""

import numpy as np
import pytest

from aomni_jax.data import checks
from tests.data.conftest import RATE, harmonic_tone

CHECKS = checks.ClipChecks()


@pytest.mark.parametrize("audio, rate, reason", [
    (harmonic_tone(300, 1.0), RATE, None),
    (harmonic_tone(300, 1.0, rate=4000), 4000, "wrong_rate"),
    (harmonic_tone(300, 0.1), RATE, "too_short"),
    (1e-5 * harmonic_tone(300, 1.0), RATE, "silent"),
    (np.clip(10 * harmonic_tone(300, 1.0), -1, 1), RATE, "clipped"),
])
def test_clip_problem(audio, rate, reason):
  assert checks.clip_problem(audio, rate, CHECKS) == reason


def test_required_rate_rejects_other_rates():
  strict = checks.ClipChecks(required_rate=44100)
  assert checks.clip_problem(harmonic_tone(300, 1.0, rate=48000), 48000, strict) == "wrong_rate"


def test_isolated_full_scale_peaks_are_not_clipping():
  audio = harmonic_tone(300, 1.0)
  audio[0, ::1000] = 1.0
  assert checks.clipped_fraction(audio) == 0.0
