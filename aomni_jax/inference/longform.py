"""Any duration from a model trained on one fixed window: overlapping windows, inpainting, crossfade.

A clip of N latent frames (window L, overlap O, hop H = L − O) is cut into windows starting at
0, H, 2H, …. Window 0 is generated as usual; each later window is generated with its first O
frames *known*: they are the last O frames of the previous window, and the sampler keeps them on
the noise path of the same initial noise (rectified-flow inpainting, `sampling.sample(known=…)`),
so the new frames are generated in context. Each window is decoded on its own and neighbours are
joined over the overlap with an equal-power (cos/sin) crossfade, which hides the VAE decoder's
edge effects. Shorter clips are one window, trimmed.
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


def equal_power_fades(length: int) -> tuple[np.ndarray, np.ndarray]:
  """(fade out, fade in) with out² + in² = 1 at every sample."""
  u = (np.arange(length, dtype=np.float64) + 0.5) / length
  return np.cos(0.5 * np.pi * u).astype(np.float32), np.sin(0.5 * np.pi * u).astype(np.float32)


def join(windows: list[np.ndarray], plan: WindowPlan, ratio: int) -> np.ndarray:
  """Decoded windows [samples, channels] → one clip of `plan.num_samples` samples."""
  if len(windows) != plan.count:
    raise ValueError(f"expected {plan.count} windows, got {len(windows)}")
  out = np.asarray(windows[0], np.float32)
  fade_out, fade_in = equal_power_fades(plan.overlap * ratio)
  for k, window in enumerate(windows[1:], start=1):
    start, cross = plan.start(k) * ratio, plan.overlap * ratio
    mixed = out[start:start + cross] * fade_out[:, None] + window[:cross] * fade_in[:, None]
    out = np.concatenate([out[:start], mixed, np.asarray(window[cross:], np.float32)])
  return out[:plan.num_samples]
