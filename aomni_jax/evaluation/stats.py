"""Bootstrap 95 % intervals: resample the evaluated items with replacement, recompute, take the
2.5th and 97.5th percentiles. Items (not patches or words) are resampled because they are the
independent units; a two-set statistic such as FAD resamples both sets independently."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95


def interval(statistic: Callable[..., float], counts: Sequence[int], resamples: int,
             seed: int = 0, estimate: float | None = None) -> tuple[float, float]:
  """Percentile interval of `statistic(*indices)`, one index draw of size `count` per set.

  With `estimate` (the statistic on the full sets) the interval is shifted by the bootstrap's
  bias (its mean minus the estimate). FAD and KID need this: a resample repeats clips, which
  shrinks the covariance and inflates the distance, so plain percentiles can miss the estimate.
  """
  rng = np.random.default_rng(seed)
  values = np.array([statistic(*(rng.integers(0, count, count) for count in counts))
                     for _ in range(resamples)])
  if estimate is not None:
    values -= values.mean() - estimate
  tail = 100.0 * (1.0 - CONFIDENCE) / 2.0
  low, high = np.percentile(values, [tail, 100.0 - tail])
  return float(low), float(high)
