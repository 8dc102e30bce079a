"""Quality checks that decide whether a clip may enter a dataset, and the tally of why not.

A build must never stop on one bad file: every problem becomes a named reason that is counted
and reported in the manifest.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from aomni_jax.audio import io as audio_io

_FULL_SCALE = 0.999
_FRAME_SECONDS = 0.05


@dataclasses.dataclass(frozen=True)
class ClipChecks:
  """Thresholds for rejecting clips; defaults suit short sound events as well as long scenes."""
  min_seconds: float = 0.15
  silence_dbfs: float = -60.0  # loudest 50 ms frame below this → "silent"
  max_clipped_fraction: float = 0.002  # share of samples inside full-scale runs → "clipped"
  min_rate: int = 8000  # below this the content cannot cover a useful band → "wrong_rate"
  required_rate: int | None = None  # when set (model-made stems), other rates → "wrong_rate"


def clip_problem(audio: np.ndarray, rate: int, checks: ClipChecks) -> str | None:
  """Returns the first reason to reject [channels, frames] audio, or None if it is usable."""
  if rate < checks.min_rate or (checks.required_rate and rate != checks.required_rate):
    return "wrong_rate"
  if audio.shape[-1] < checks.min_seconds * rate:
    return "too_short"
  if loudest_frame_dbfs(audio, rate) < checks.silence_dbfs:
    return "silent"
  if clipped_fraction(audio) > checks.max_clipped_fraction:
    return "clipped"
  return None


def loudest_frame_dbfs(audio: np.ndarray, rate: int) -> float:
  """RMS level of the loudest short frame, in dBFS (a sine at full scale is -3 dBFS)."""
  mono = np.atleast_2d(audio).mean(axis=0)
  frame = min(len(mono), max(1, int(_FRAME_SECONDS * rate)))
  usable = (len(mono) // frame) * frame
  power = np.square(mono[:usable].astype(np.float64)).reshape(-1, frame).mean(axis=1)
  return float(10 * np.log10(power.max() + 1e-20))


def clipped_fraction(audio: np.ndarray) -> float:
  """Share of samples in runs of ≥3 consecutive full-scale samples (lone peaks are legitimate)."""
  at_rail = np.abs(np.atleast_2d(audio)) >= _FULL_SCALE
  run = at_rail[:, 2:] & at_rail[:, 1:-1] & at_rail[:, :-2]
  return float(run.sum() / max(1, at_rail.size))


def read_checked(path: str, checks: ClipChecks) -> tuple[np.ndarray | None, int, str | None]:
  """Reads a file and applies the checks; returns (audio or None, rate, reason or None)."""
  try:
    audio, rate = audio_io.read_audio(path)
  except audio_io.AudioReadError as error:
    return None, 0, error.reason
  problem = clip_problem(audio, rate, checks)
  return (None if problem else audio), rate, problem


class DropCounter(collections.Counter):
  """Counts of dropped items per reason, merged across worker processes."""

  def summary(self) -> str:
    return ", ".join(f"{reason}={count}" for reason, count in sorted(self.items())) or "none"
