"""Fixtures for the data tests: a folder of generated clips (good and deliberately bad) and a
tiny dataset built from it once per session. Clips are 2 s so builds take seconds."""

import csv
import dataclasses
import os
import sys

from absl import flags
import numpy as np
import pytest
import soundfile as sf

from aomni_jax.data import build
from aomni_jax.data import loader
from aomni_jax.data import sources
from aomni_jax.data import synth

if not flags.FLAGS.is_parsed():  # grain worker processes read absl flags
  flags.FLAGS(sys.argv[:1])

RATE = 44100
SYNTH = synth.SynthConfig(clip_seconds=2.0)
SHAPES = loader.Shapes(mel_frames=int(1.8 * RATE), target_frames=SYNTH.frames)
BUILD = build.BuildConfig(seed=3, mixtures=8, style_pairs=0, max_singles_per_kind=2,
                          num_shards=3, workers=2, synth=SYNTH)
# Bad files written by `clip_folder` and the reason each must be dropped with.
EXPECTED_DROPS = {"corrupt": 1, "empty": 1, "silent": 1, "clipped": 1, "too_short": 1,
                  "wrong_rate": 1}


def harmonic_tone(f0: float, seconds: float, rate: int = RATE, amplitude: float = 0.3):
  """A 3-harmonic tone [1, frames]: its F0 is unambiguous for pitch measurements."""
  t = np.arange(int(seconds * rate)) / rate
  wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in (1, 2, 3))
  return (amplitude * wave / 1.84)[None].astype(np.float32)


def noise(seconds: float, seed: int, rate: int = RATE, amplitude: float = 0.1):
  return (amplitude * np.random.default_rng(seed).standard_normal((2, int(seconds * rate))))


def _write(path: str, audio: np.ndarray, rate: int = RATE) -> str:
  sf.write(path, np.atleast_2d(audio).T, rate)
  return path


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory) -> str:
  """Returns a clips.csv with 8 usable clips and one bad file per drop reason."""
  folder = str(tmp_path_factory.mktemp("clips"))
  rows = []

  def add(name, audio, label, kind, rate=RATE, transcript=""):
    _write(os.path.join(folder, name), audio, rate)
    rows.append({"path": name, "label": label, "kind": kind, "transcript": transcript,
                 "licence": "CC0"})

  add("beep.wav", harmonic_tone(440, 0.6), "beep", "event")
  add("hum.wav", harmonic_tone(110, 1.0), "hum", "event")
  add("burst.flac", noise(0.4, 1, amplitude=0.3), "burst", "event")
  add("rain.wav", noise(3.0, 2), "rain", "background")
  add("wind.flac", noise(1.5, 3, amplitude=0.05), "wind", "background")
  add("voice.wav", harmonic_tone(180, 1.2) * np.sin(np.linspace(0, 20, int(1.2 * RATE))),
      "speech", "speech", transcript="Hello there.")
  add("organ.wav", harmonic_tone(262, 1.5), "organ", "music")
  add("low_rate.wav", harmonic_tone(220, 1.0, rate=4000), "beep", "event", rate=4000)
  add("silent.wav", np.zeros((1, RATE)), "hum", "event")
  add("clipped.wav", np.sign(harmonic_tone(200, 1.0)) * 1.0, "hum", "event")
  add("short.wav", harmonic_tone(440, 0.05), "beep", "event")
  with open(os.path.join(folder, "corrupt.wav"), "wb") as handle:
    handle.write(b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10)
  rows.append({"path": "corrupt.wav", "label": "beep", "kind": "event"})
  open(os.path.join(folder, "empty.flac"), "wb").close()
  rows.append({"path": "empty.flac", "label": "beep", "kind": "event"})
  table = os.path.join(folder, "clips.csv")
  with open(table, "w", newline="") as handle:
    writer = csv.DictWriter(handle, fieldnames=["path", "label", "kind", "transcript", "licence"])
    writer.writeheader()
    writer.writerows(rows)
  return table


@pytest.fixture(scope="session")
def tiny_dataset(clip_folder, tmp_path_factory) -> str:
  out = str(tmp_path_factory.mktemp("tiny_dataset"))
  build.build_dataset(sources.read_table(clip_folder), out, BUILD, progress=False)
  return out


def small_build(**changes) -> build.BuildConfig:
  return dataclasses.replace(BUILD, **changes)
