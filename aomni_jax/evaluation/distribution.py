"""Distances between two sets of embeddings: Fréchet distance (FAD) and kernel MMD (KID).

FAD fits one Gaussian per set and is biased upwards at small n (it needs more embeddings than
dimensions to be stable); KID is the unbiased MMD² with the cubic polynomial kernel, so its
expectation does not depend on n, which is what makes small evaluation sets comparable.
"""

from __future__ import annotations

import numpy as np

from aomni_jax.evaluation.fidelity import MetricInputError

KID_SUBSET_SIZE = 1000
KID_SUBSETS = 50


def _check_embeddings(embeddings: np.ndarray, name: str) -> np.ndarray:
  embeddings = np.asarray(embeddings, np.float64)
  if embeddings.ndim != 2 or len(embeddings) < 2:
    raise MetricInputError(f"{name}: need at least 2 embeddings [n, dim], got shape "
                           f"{embeddings.shape}")
  if not np.all(np.isfinite(embeddings)):
    raise MetricInputError(f"{name}: embeddings contain NaN or inf")
  return embeddings


def _check_sets(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  a, b = _check_embeddings(a, "first set"), _check_embeddings(b, "second set")
  if a.shape[1] != b.shape[1]:
    raise MetricInputError(f"embedding sizes differ: {a.shape[1]} vs {b.shape[1]}")
  return a, b


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
  values, vectors = np.linalg.eigh(matrix)
  return (vectors * np.sqrt(np.maximum(values, 0.0))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa^½ Σb Σa^½)^½) between Gaussians fitted to [n, dim] sets.

  The trace of the matrix square root is taken from the symmetric form, whose eigenvalues are
  real and non-negative, so the result stays real where sqrtm(Σa Σb) picks up imaginary noise.
  """
  a, b = _check_sets(a, b)
  mean_gap = a.mean(axis=0) - b.mean(axis=0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root_a = _psd_sqrt(cov_a)
  cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
  trace_sqrt = np.sum(np.sqrt(np.maximum(cross, 0.0)))
  return float(mean_gap @ mean_gap + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
  dim = x.shape[1]
  k_xx = (x @ x.T / dim + 1.0)**3
  k_yy = (y @ y.T / dim + 1.0)**3
  k_xy = (x @ y.T / dim + 1.0)**3
  m, n = len(x), len(y)
  within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
  within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
  return float(within_x + within_y - 2.0 * k_xy.mean())


def kernel_distance(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
  """KID: unbiased MMD² (kernel (x·y/d + 1)³), averaged over random subsets of ≤1000 each."""
  a, b = _check_sets(a, b)
  if len(a) <= KID_SUBSET_SIZE and len(b) <= KID_SUBSET_SIZE:
    return _unbiased_mmd2(a, b)
  rng = np.random.default_rng(seed)
  size_a, size_b = min(len(a), KID_SUBSET_SIZE), min(len(b), KID_SUBSET_SIZE)
  return float(np.mean([
      _unbiased_mmd2(a[rng.choice(len(a), size_a, replace=False)],
                     b[rng.choice(len(b), size_b, replace=False)]) for _ in range(KID_SUBSETS)
  ]))
