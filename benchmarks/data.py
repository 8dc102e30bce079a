"""Data pipeline speed: synthetic pairs per second per core, and loader throughput with N workers,
against what one training step consumes (≈ 8 examples per 0.28 s on one H100 at full size).

  python benchmarks/data.py [--root ~/.cache/aomni_jax] [--workers 0,1,2,4] [--batches 12]

Uses the embedded default dataset (built on first use) for both measurements.
"""

from __future__ import annotations

import argparse
import os
import time

from aomni_jax.data import build
from aomni_jax.data import checks
from aomni_jax.data import default
from aomni_jax.data import loader
from aomni_jax.data import sources

STEP_EXAMPLES, STEP_SECONDS = 8, 0.28  # full-size training step on one H100


def synthesis_rate(data_dir: str, items: int) -> tuple[float, float]:
  """(edit pairs/s, items/s) on one core: add/remove/extract of `items` mixtures."""
  clips = sources.read_table(os.path.join(data_dir, "clips.csv"))
  config = default.DEFAULT_BUILD
  usable = [c for c in clips if checks.read_checked(c.path, config.checks)[2] is None]
  jobs = [j for j in build.plan_jobs(usable, config, soundfont=None) if j.kind == "mix"][:items]
  build.make_item(jobs[0], config)  # warm caches and imports
  start = time.perf_counter()
  for job in jobs:
    build.make_item(job, config)
  elapsed = time.perf_counter() - start
  return 3 * len(jobs) / elapsed, len(jobs) / elapsed


def loader_rate(data_dir: str, workers: int, batch_size: int, batches: int) -> tuple[float, float]:
  """(examples/s, MB/s) of decoded batches after the first (worker start-up excluded)."""
  iterator = loader.make_train_iterator(data_dir, batch_size, seed=0, worker_count=workers,
                                        process_index=0, process_count=1)
  next(iterator)
  start, total_bytes = time.perf_counter(), 0
  for _ in range(batches):
    batch = next(iterator)
    total_bytes += sum(v.nbytes for v in batch.values())
  elapsed = time.perf_counter() - start
  if hasattr(iterator, "close"):
    iterator.close()
  return batches * batch_size / elapsed, total_bytes / elapsed / 1e6


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--root", default=os.path.expanduser("~/.cache/aomni_jax"))
  parser.add_argument("--workers", default="0,1,2")
  parser.add_argument("--batch-size", type=int, default=STEP_EXAMPLES)
  parser.add_argument("--batches", type=int, default=12)
  parser.add_argument("--items", type=int, default=12)
  args = parser.parse_args()
  loader.parse_absl_flags()
  data_dir = default.ensure_default_dataset(args.root)
  need = STEP_EXAMPLES / STEP_SECONDS
  pairs, items = synthesis_rate(data_dir, args.items)
  print(f"cores on this host: {os.cpu_count()}")
  print(f"synthesis (1 core): {pairs:7.1f} edit pairs/s  ({items:.1f} mixtures/s, 11 s stereo)")
  print(f"training step needs {need:.1f} examples/s (batch {STEP_EXAMPLES} / {STEP_SECONDS} s)")
  print(f"{'workers':>8} {'examples/s':>11} {'MB/s':>8} {'x step need':>12}")
  for workers in (int(w) for w in args.workers.split(",")):
    examples, megabytes = loader_rate(data_dir, workers, args.batch_size, args.batches)
    print(f"{workers:>8} {examples:>11.1f} {megabytes:>8.1f} {examples / need:>12.2f}")


if __name__ == "__main__":
  main()
