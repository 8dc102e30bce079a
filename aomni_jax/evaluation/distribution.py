"""Distances between two sets of embeddings: Fréchet distance (FAD) and kernel MMD (KID).

FAD fits one Gaussian per set and is biased upwards at small n (it needs more embeddings than
dimensions to be stable); KID is the unbiased MMD² with the cubic polynomial kernel, so its
expectation does not depend on n, which is what makes small evaluation sets comparable.
"""

from __future__ import annotations

import numpy as np

from aomni_jax.evaluation.fidelity import MetricInputError


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


def _covariance_factor(embeddings: np.ndarray) -> np.ndarray:
  """F with F Fᵀ = Σ (the sample covariance), of width min(n, dim) so products stay small."""
  centred = embeddings - embeddings.mean(axis=0)
  if len(centred) > centred.shape[1]:
    centred = np.linalg.qr(centred, mode="r")  # RᵀR = XᵀX with R [dim, dim]
  return centred.T / np.sqrt(len(embeddings) - 1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """‖μa − μb‖² + tr Σa + tr Σb − 2 tr (Σa^½ Σb Σa^½)^½ between Gaussians fitted to [n, dim] sets.

  With factors Σ = F Fᵀ the matrix-square-root term is the nuclear norm of Faᵀ Fb (the sum of
  its singular values), which is exact, real by construction and needs only a min(n, dim)-sized
  SVD: milliseconds for a few hundred 1024-d embeddings, where sqrtm needs a 1024³ solve.
  """
  a, b = _check_sets(a, b)
  mean_gap = a.mean(axis=0) - b.mean(axis=0)
  factor_a, factor_b = _covariance_factor(a), _covariance_factor(b)
  trace_sqrt = np.sum(np.linalg.svd(factor_a.T @ factor_b, compute_uv=False))
  return float(mean_gap @ mean_gap + np.sum(factor_a**2) + np.sum(factor_b**2) - 2.0 * trace_sqrt)


def kernel_matrices(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Cubic polynomial kernels (x·y/dim + 1)³ within a, within b and across: KID's ingredients,
  computed once so bootstrap resamples only index them."""
  a, b = _check_sets(a, b)
  dim = a.shape[1]
  return tuple((x @ y.T / dim + 1.0)**3 for x, y in ((a, a), (b, b), (a, b)))


def mmd2_from_kernels(k_aa: np.ndarray, k_bb: np.ndarray, k_ab: np.ndarray) -> float:
  """Unbiased MMD²: the diagonals (each point with itself) are left out of the within-set means."""
  m, n = len(k_aa), len(k_bb)
  within_a = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
  within_b = (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
  return float(within_a + within_b - 2.0 * k_ab.mean())


def kernel_distance(a: np.ndarray, b: np.ndarray) -> float:
  """KID: the unbiased MMD² between two [n, dim] sets under the cubic polynomial kernel."""
  return mmd2_from_kernels(*kernel_matrices(a, b))
