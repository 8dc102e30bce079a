"""Real branch: a folder of separated stems (as a source-separation model would produce) → the
same add/remove/extract pairs as the synthetic branch, after offline quality filters.

Layout: ROOT/labels.csv with columns `clip_id,label[,licence]`, and per clip a folder
ROOT/<clip_id>/ holding `target.*` (the labelled sound) and `residual.*` (everything else).
Every filter reports how many items it dropped and why (`FilterReport.dropped`).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import glob
import multiprocessing
import os

import numpy as np

from aomni_jax.data import build
from aomni_jax.data import checks as checks_lib
from aomni_jax.data import records
from aomni_jax.data.sources import Clip

_FRAME_SECONDS = 0.05


@dataclasses.dataclass(frozen=True)
class StemFilters:
  """Offline filters for model-separated stems."""
  min_seconds: float = 1.0
  min_active_fraction: float = 0.1  # share of target frames within 30 dB of its loudest frame
  activity_range_db: float = 30.0
  allowed_labels: tuple[str, ...] | None = None  # None keeps every label
  checks: checks_lib.ClipChecks = checks_lib.ClipChecks(required_rate=44100)


def active_fraction(audio: np.ndarray, rate: int, range_db: float) -> float:
  """Energy-based activity detection: share of 50 ms frames within `range_db` of the loudest."""
  mono = np.atleast_2d(audio).mean(axis=0)
  frame = max(1, int(_FRAME_SECONDS * rate))
  usable = (len(mono) // frame) * frame
  if usable == 0:
    return 0.0
  level = 10 * np.log10(np.square(mono[:usable].astype(np.float64)).reshape(-1, frame).mean(1)
                        + 1e-20)
  return float(np.mean(level > level.max() - range_db))


def scan_stems_folder(root: str) -> list[tuple[Clip, Clip]]:
  """(residual, target) clip pairs listed in ROOT/labels.csv."""
  pairs = []
  with open(os.path.join(root, "labels.csv"), newline="", encoding="utf-8") as handle:
    for row in csv.DictReader(handle):
      folder = os.path.join(root, row["clip_id"])
      licence = row.get("licence") or "unknown"
      # A stem that is not there keeps its pattern as the path, so reading it reports "missing"
      # (an empty path would be read as the current directory).
      patterns = {role: os.path.join(folder, f"{role}.*") for role in ("residual", "target")}
      found = {role: (glob.glob(pattern) or [pattern])[0] for role, pattern in patterns.items()}
      pairs.append(tuple(Clip(found[role], row["label"], "event", licence=licence,
                              source=f"stems:{row['clip_id']}") for role in ("residual", "target")))
  return pairs


def pair_problem(pair: tuple[Clip, Clip], filters: StemFilters) -> str | None:
  """The first filter a (residual, target) pair fails, or None to keep it."""
  residual, target = pair
  if filters.allowed_labels is not None and target.label not in filters.allowed_labels:
    return "label_not_allowed"
  loaded = {}
  for role, clip in (("residual", residual), ("target", target)):
    audio, rate, problem = checks_lib.read_checked(clip.path, filters.checks)
    if problem:
      return f"{role}_{problem}"
    loaded[role] = (audio, rate)
  (residual_audio, residual_rate), (target_audio, target_rate) = loaded.values()
  if residual_rate != target_rate:
    return "rate_mismatch"
  if min(residual_audio.shape[-1], target_audio.shape[-1]) < filters.min_seconds * target_rate:
    return "too_short"
  if active_fraction(target_audio, target_rate, filters.activity_range_db) < (
      filters.min_active_fraction):
    return "inactive_target"
  return None


@dataclasses.dataclass
class FilterReport:
  kept: int
  dropped: checks_lib.DropCounter


def build_real_dataset(root: str, out_dir: str, config: build.BuildConfig,
                       filters: StemFilters = StemFilters(),
                       progress: bool = True) -> tuple[records.Manifest, FilterReport]:
  """Filters the stems folder and writes its edit pairs as a dataset."""
  pairs = scan_stems_folder(root)
  with multiprocessing.get_context("spawn").Pool(config.workers) as pool:
    problems = pool.map(functools.partial(pair_problem, filters=filters), pairs)
  report = FilterReport(kept=problems.count(None),
                        dropped=checks_lib.DropCounter(p for p in problems if p))
  kept = [pair for pair, problem in zip(pairs, problems) if problem is None]
  jobs = [build.Job("stems", index, pair) for index, pair in enumerate(kept)]
  return build.write_dataset(jobs, out_dir, config, report.dropped, progress), report
