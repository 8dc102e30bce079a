"""Where benchmark figures live: one JSON per run under `benchmarks/results/`, with what made them.

Every benchmark ends with `record.save(name, rows, config)`. Each row is a dict with at least `what`
(the workload) and `summary` (the headline, human-readable); the other keys are the raw numbers.
`benchmarks/report.py` builds the README's performance table from these files, so every figure
there names its device, date, commit and library versions.

On a machine without the git checkout, or whose copy of it may be stale (a rented GPU), set
AOMNI_COMMIT to the hash from your own checkout (`$(git rev-parse HEAD)` expanded *there*, not on
the rented machine); AOMNI_RESULTS_DIR sends the files elsewhere (e.g. a folder copied back).
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import re
import statistics
import subprocess
from typing import Any, Callable

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"


def _commit() -> str:
  given = os.environ.get("AOMNI_COMMIT", "")
  if given:
    if not re.fullmatch(r"[0-9a-f]{7,40}", given):
      raise ValueError(f"AOMNI_COMMIT={given!r} is not a commit hash (git rev-parse HEAD)")
    return given
  try:
    return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                          text=True, check=True, cwd=RESULTS_DIR.parent).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def environment() -> dict[str, Any]:
  """Device, software and source version of this run."""
  import flax
  import jax
  import jaxlib
  devices = jax.devices()
  return dict(device=devices[0].device_kind, platform=devices[0].platform,
              device_count=len(devices), process_count=jax.process_count(),
              jax=jax.__version__, jaxlib=jaxlib.__version__, flax=flax.__version__,
              python=platform.python_version(), commit=_commit(), host_cpus=os.cpu_count(),
              date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


def spread(samples: list[float]) -> dict[str, float]:
  """Median and spread of repeated timings (any unit)."""
  return dict(median=statistics.median(samples), min=min(samples), max=max(samples),
              stdev=statistics.stdev(samples) if len(samples) > 1 else 0.0, n=len(samples))


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, float]:
  """Wall-clock milliseconds of `fn()` (blocked until ready) after `warmup` untimed calls."""
  import time

  import jax
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append((time.perf_counter() - start) * 1e3)
  return spread(times)


def save(name: str, rows: list[dict[str, Any]], config: dict[str, Any]) -> pathlib.Path:
  """Writes `<name>_<device>_<date>.json` and returns its path."""
  for row in rows:
    if "what" not in row or ("summary" not in row and "error" not in row):
      raise ValueError(f"benchmark row needs 'what' and 'summary' (or 'error'): {row}")
  env = environment()
  out_dir = pathlib.Path(os.environ.get("AOMNI_RESULTS_DIR") or RESULTS_DIR)
  out_dir.mkdir(parents=True, exist_ok=True)
  device = re.sub(r"[^A-Za-z0-9]+", "-", env["device"]).strip("-")
  stamp = env["date"].replace(":", "").replace("-", "")
  path = out_dir / f"{name}_{device}_{stamp}.json"
  path.write_text(json.dumps(dict(benchmark=name, environment=env, config=config, rows=rows),
                             indent=1, default=str), encoding="utf-8")
  print(f"results: {path}")
  return path
