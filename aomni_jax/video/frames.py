"""Per-frame image transforms (on RGB PIL images), matching the torchvision transforms the official code uses.

PIL's resampling filters widen with the scale factor when shrinking (antialiasing), as
torchvision's `Resize(antialias=True)` does, so results agree to within rounding.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_short_side_center_crop(size: int):
  """MMAudio's sync transform: `Resize(size, bicubic)` on the short side, then `CenterCrop(size)`."""

  def transform(image: Image.Image) -> np.ndarray:
    w, h = image.size
    if w <= h:
      new_w, new_h = size, int(size * h / w)
    else:
      new_w, new_h = int(size * w / h), size
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)

  return transform


def resize_square(size: int):
  """The official Qwen frames: `Resize((size, size))` (bilinear), so the aspect ratio is not kept."""

  def transform(image: Image.Image) -> np.ndarray:
    image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)

  return transform
