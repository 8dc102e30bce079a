"""Any duration from a model trained on one fixed window: overlapping windows, inpainting, crossfade.

A clip of N latent frames (window L, overlap O, hop H = L − O) is cut into windows starting at
0, H, 2H, …. Window 0 is generated as usual; each later window is generated with its first O
frames *known*: they are the last O frames of the previous window, and the sampler keeps them on
the noise path of the same initial noise (rectified-flow inpainting, `sampling.sample(known=…)`),
so the new frames are generated in context (the known frames are not pasted back at the end: the
model's own, harmonised version of them is kept, so a window has no seam of its own). Each window
is decoded on its own and neighbours are joined over the overlap with an equal-power crossfade,
which also hides the VAE decoder's edge effects. Its gains are cos/sin corrected for the
correlation ρ of the two overlapping segments, cos θ·k and sin θ·k with k = 1/√(1 + ρ·sin 2θ),
so the mix keeps the power for any ρ: plain cos/sin for unrelated audio, and no +3 dB bump for
the near-identical audio that inpainting produces. Shorter clips are one window, trimmed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class WindowPlan:
  """Where every window of one clip starts, in latent frames, and how much of the end is kept."""

  window: int  # L, latent frames per window
  overlap: int  # O, frames shared with the previous window
  count: int  # number of windows
  num_samples: int  # output length after trimming

  @property
  def hop(self) -> int:
    return self.window - self.overlap

  def start(self, k: int) -> int:
    return k * self.hop


def plan_windows(num_samples: int, window: int, ratio: int, overlap: int) -> WindowPlan:
  """Windows covering `num_samples` output samples (`ratio` samples per latent frame).

  `overlap` is clamped to [1, window // 2] so that every window adds new frames.
  """
  if num_samples < 1:
    raise ValueError(f"the clip must have at least one sample, got {num_samples}")
  frames = math.ceil(num_samples / ratio)
  overlap = min(max(int(overlap), 1), window // 2)
  count = 1 if frames <= window else 1 + math.ceil((frames - window) / (window - overlap))
  return WindowPlan(window, overlap, count, num_samples)


def known_frames(previous: np.ndarray, plan: WindowPlan) -> tuple[np.ndarray, np.ndarray]:
  """(known latents, mask) for the next window: the previous window's [B, L, C] tail first."""
  known = np.zeros_like(previous)
  known[:, :plan.overlap] = previous[:, plan.hop:]
  mask = np.zeros(previous.shape[:2] + (1,), bool)
  mask[:, :plan.overlap] = True
  return known, mask


def equal_power_fades(length: int, correlation: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """(fade out, fade in) with out² + in² + 2ρ·out·in = 1: the mix of two segments of equal power
  and correlation ρ keeps that power at every sample (ρ = 0: the usual cos/sin)."""
  theta = 0.5 * np.pi * (np.arange(length, dtype=np.float64) + 0.5) / length
  k = 1.0 / np.sqrt(1.0 + correlation * np.sin(2.0 * theta))
  return (np.cos(theta) * k).astype(np.float32), (np.sin(theta) * k).astype(np.float32)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
  """Zero-lag correlation coefficient of two segments, clipped to [0, 1] (0 if one is silent)."""
  norm = float(np.sqrt(np.sum(np.square(a, dtype=np.float64)) *
                       np.sum(np.square(b, dtype=np.float64))))
  return 0.0 if norm == 0.0 else float(np.clip(np.sum(a * b, dtype=np.float64) / norm, 0.0, 1.0))


def join(windows: list[np.ndarray], plan: WindowPlan, ratio: int) -> np.ndarray:
  """Decoded windows [samples, channels] → one clip of `plan.num_samples` samples."""
  if len(windows) != plan.count:
    raise ValueError(f"expected {plan.count} windows, got {len(windows)}")
  out = np.asarray(windows[0], np.float32)
  for k, window in enumerate(windows[1:], start=1):
    start, cross = plan.start(k) * ratio, plan.overlap * ratio
    tail, head = out[start:start + cross], np.asarray(window[:cross], np.float32)
    fade_out, fade_in = equal_power_fades(cross, correlation(tail, head))
    mixed = tail * fade_out[:, None] + head * fade_in[:, None]
    out = np.concatenate([out[:start], mixed, np.asarray(window[cross:], np.float32)])
  return out[:plan.num_samples]
