"""Real recordings for the evaluation tests, from the same Debian packages as the default dataset.

The packages are fetched once into the CLI's cache (`~/.cache/aomni_jax/debian`, ≈60 MB; needs
`apt-get`), so every test session after the first reads them from disk.
"""

import os
import shutil

import numpy as np
import pytest

from aomni_jax.audio import dsp
from aomni_jax.audio import io as audio_io
from aomni_jax.data import sources
# The data tests' tiny built dataset (and the clip folder it is built from), shared here.
from tests.data.conftest import clip_folder  # noqa: F401
from tests.data.conftest import tiny_dataset  # noqa: F401

CACHE_DIR = os.path.expanduser("~/.cache/aomni_jax/debian")


@pytest.fixture(scope="session")
def real_clips() -> list[sources.Clip]:
  if shutil.which("apt-get") is None:
    pytest.skip("needs apt-get (Debian) to fetch the real recordings")
  return sources.debian_clips(["sonic-pi", "freedesktop", "alsa", "asterisk", "gcompris"],
                              CACHE_DIR)


def load_mono(clip: sources.Clip, rate: int) -> np.ndarray:
  """The clip as mono float32 [frames] at `rate`."""
  audio, clip_rate = audio_io.read_audio(clip.path)
  return dsp.resample(dsp.to_channels(audio, 1), clip_rate, rate)[0]


@pytest.fixture(scope="session")
def sound_pool(real_clips) -> tuple[list[sources.Clip], list[np.ndarray]]:
  """Every real event, background and music recording (≈120), first 5 s, mono 16 kHz."""
  clips = [c for c in real_clips if c.kind in ("event", "background", "music")]
  return clips, [load_mono(c, 16000)[:5 * 16000] for c in clips]


@pytest.fixture(scope="session")
def yamnet_model():
  from aomni_jax.evaluation import yamnet
  return yamnet.Yamnet()


@pytest.fixture(scope="session")
def pool_outputs(sound_pool, yamnet_model):
  return yamnet_model(sound_pool[1])


@pytest.fixture(scope="session")
def speech_clip(real_clips) -> tuple[np.ndarray, int]:
  """A few seconds of real read speech (Asterisk prompt, 16 kHz)."""
  clip = next(c for c in real_clips if c.source == "asterisk-core-sounds-en"
              and len(c.transcript.split()) >= 8)
  return load_mono(clip, 16000), 16000
