"""Style pairs: one phrase rendered with two instruments keeps every note's pitch and timing.
Uses the real TimGM6mb soundfont from Debian (5 MB download, cached per session)."""

import shutil

import numpy as np
import pytest

from aomni_jax.data import sources
from aomni_jax.data import synth

pytestmark = pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (Debian)")
RATE = 44100


@pytest.fixture(scope="module")
def soundfont(tmp_path_factory):
  return sources.debian_soundfont(str(tmp_path_factory.mktemp("debian")))


def estimated_midi_pitch(segment: np.ndarray) -> float:
  """Harmonic-sum pitch estimate: the candidate whose first 5 harmonics are loudest (log)."""
  n = 1 << 16
  log_spectrum = np.log(np.abs(np.fft.rfft(segment * np.hanning(len(segment)), n)) + 1e-6)
  candidates = np.arange(36.0, 97.0, 0.1)
  f0 = 440.0 * 2 ** ((candidates - 69) / 12)
  bins = np.round(np.outer(f0, np.arange(1, 6)) * n / RATE).astype(int)
  return float(candidates[np.argmax(log_spectrum[bins].mean(axis=1))])


def note_pitch_errors(audio: np.ndarray, phrase: synth.Phrase) -> np.ndarray:
  mono = audio.mean(axis=0)
  errors = []
  for pitch, onset, duration, _ in phrase.notes:
    start, stop = int((onset + 0.03) * RATE), int((onset + min(duration, 0.25)) * RATE)
    errors.append(abs(estimated_midi_pitch(mono[start:stop]) - pitch))
  return np.array(errors)


def test_both_renderings_play_the_phrase_notes(soundfont):
  item = synth.style_item("s", soundfont.path, np.random.default_rng(3), synth.SynthConfig())
  phrase = synth.Phrase(tuple(tuple(n) for n in item.meta["notes"]), item.meta["phrase"])
  first, second = item.meta["labels"]
  assert first != second and len(phrase.notes) >= 4
  for name in (first, second):
    errors = note_pitch_errors(item.stems[name], phrase)
    assert np.mean(errors < 0.5) >= 0.9, (name, errors)
    onset = np.flatnonzero(np.abs(item.stems[name].mean(axis=0)) > 1e-3)[0] / RATE
    assert onset == pytest.approx(phrase.notes[0][1], abs=0.02)
  style = [ex for ex in item.examples if ex["task"] == "style"]
  assert style[0]["instruction"] == f"Change the sound of '{first}' to '{second}'."
  assert style[0]["input"] == [first] and style[0]["target"] == [second]


def test_a_shifted_phrase_is_detected(soundfont):
  # The pitch check can fail: notes rendered a whole tone higher are off by 2 semitones.
  phrase = synth.random_phrase(np.random.default_rng(1), 6.0)
  higher = synth.Phrase(tuple((p + 2, o, d, v) for p, o, d, v in phrase.notes), "")
  audio = synth.render_phrase(soundfont.path, synth.INSTRUMENTS["piano"], higher,
                              synth.SynthConfig())
  assert np.mean(note_pitch_errors(audio, phrase) < 0.5) < 0.2
