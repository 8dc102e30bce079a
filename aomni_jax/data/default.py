"""The small embedded dataset of real recordings that the README's training run uses.

Built on first use from Debian packages (≈85 MB download, no root needed) and cached; about
250 examples covering every task family except V2A/V2M (Debian ships no videos). The build goes
to a temporary directory that is renamed into place, and a file lock keeps concurrent processes on
one host from building it twice.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import shutil

from aomni_jax.data import build
from aomni_jax.data import records
from aomni_jax.data import sources

_LOG = logging.getLogger(__name__)

DEFAULT_SOURCES = ("sonic-pi", "freedesktop", "alsa", "asterisk", "gcompris")
DEFAULT_BUILD = build.BuildConfig(seed=0, mixtures=40, style_pairs=12, max_singles_per_kind=16,
                                  voice_clone_pairs=16, num_shards=4)
# Bumped whenever the default build changes, so a cached older build is not reused.
DEFAULT_VERSION = 2
_MAX_SPEECH_CLIPS = 32  # the Asterisk set alone has ~250; the default needs only a few


def default_dataset_dir(root: str) -> str:
  return os.path.join(root, f"default-v{records.SCHEMA_VERSION}.{DEFAULT_VERSION}")


def ensure_default_dataset(root: str, workers: int | None = None, progress: bool = True) -> str:
  """Returns the directory of the default dataset under `root`, building it if absent."""
  out_dir = default_dataset_dir(root)
  if os.path.exists(os.path.join(out_dir, records.MANIFEST)):
    return out_dir
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, ".default.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.exists(os.path.join(out_dir, records.MANIFEST)):
      _build(root, out_dir, workers, progress)
  return out_dir


def default_clips(cache_dir: str) -> list[sources.Clip]:
  clips = sources.debian_clips(list(DEFAULT_SOURCES), cache_dir)
  speech = [c for c in clips if c.kind == "speech"]
  keep = set(speech[::max(1, len(speech) // _MAX_SPEECH_CLIPS)][:_MAX_SPEECH_CLIPS])
  return [c for c in clips if c.kind != "speech" or c in keep]


def _build(root: str, out_dir: str, workers: int | None, progress: bool) -> None:
  cache_dir = os.path.join(root, "cache")
  _LOG.info("building the default dataset in %s (first use only)", out_dir)
  clips = default_clips(cache_dir)
  soundfont = sources.debian_soundfont(cache_dir)
  config = DEFAULT_BUILD if workers is None else dataclasses.replace(DEFAULT_BUILD, workers=workers)
  staging = out_dir + ".partial"
  shutil.rmtree(staging, ignore_errors=True)
  build.build_dataset(clips, staging, config, soundfont=soundfont, progress=progress)
  sources.write_table(clips, os.path.join(staging, "clips.csv"))
  os.rename(staging, out_dir)
