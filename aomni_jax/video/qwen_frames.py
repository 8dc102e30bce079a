"""Video frames → the Qwen vision tower's patch rows, as Qwen2-VL's video processor lays them out.

This replaces the Hugging Face video processor (which needs torchvision) for the fixed-size frames
the model is given (50 frames, 224×224): rescale to [0, 1], normalise with the CLIP mean and std,
pad the frame count to a multiple of the temporal patch by repeating the last frame, and cut
(temporal_patch × patch × patch) tubelets in the merge-block order the vision tower expects.

Frames whose side is a multiple of patch × merge (224 = 8 · 28) are not resized, which is what
the processor does with `min_pixels` = 3136 (→ 1600 video tokens for 50 frames). Processor
versions that apply the video class default `min_pixels` = 100352 upsample to 336×336 instead
(3600 tokens; official_spec §3.1 marks this as version-dependent).
"""

from __future__ import annotations

import numpy as np

from aomni_jax.models.qwen_omni.config import VisionConfig

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
# The processor's fps when none is given: TMRoPE then counts 2 frames / 2.0 fps = 1 s per grid
# step, although the official frames are 5 fps apart (official_spec §3.1).
SECONDS_PER_GRID = 1.0


def video_grid(num_frames: int, height: int, width: int, vision: VisionConfig) -> tuple[int, ...]:
  """(t, h, w) patch grid of a clip; raises if the size does not fit the merge blocks."""
  unit = vision.patch_size * vision.spatial_merge_size
  if height % unit or width % unit:
    raise ValueError(f"Qwen frames of {height}×{width} are not a multiple of {unit} "
                     "(patch × merge); resize them first")
  t = -(-num_frames // vision.temporal_patch_size)
  return (t, height // vision.patch_size, width // vision.patch_size)


def video_token_count(num_frames: int, height: int, width: int, vision: VisionConfig) -> int:
  """How many <|VIDEO|> tokens the clip becomes in the prompt."""
  return int(np.prod(video_grid(num_frames, height, width, vision))) // vision.merge_unit


def video_patches(frames: np.ndarray, vision: VisionConfig) -> tuple[np.ndarray, np.ndarray]:
  """uint8 frames [T, H, W, 3] → (patch rows [t·h·w, 3·tp·p·p] float32, grid_thw [3])."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"expected RGB frames [T, H, W, 3], got {frames.shape}")
  t, gh, gw = video_grid(frames.shape[0], frames.shape[1], frames.shape[2], vision)
  tp, p, m = vision.temporal_patch_size, vision.patch_size, vision.spatial_merge_size
  pad = t * tp - frames.shape[0]
  if pad:
    frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
  x = (frames.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
  x = x.transpose(0, 3, 1, 2)  # [T, C, H, W], the processor's layout
  x = x.reshape(t, tp, 3, gh // m, m, p, gw // m, m, p)
  x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
  return (np.ascontiguousarray(x.reshape(t * gh * gw, 3 * tp * p * p)),
          np.array([t, gh, gw], np.int64))
