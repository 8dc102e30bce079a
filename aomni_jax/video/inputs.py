"""Everything a V2A / V2M request or a training item needs from one video file, in one decode.

  * `sync_frames`: 25 fps, 224×224 uint8 RGB for Synchformer (250 frames for 10 s);
  * `qwen_frames`: 5 fps, 224×224 uint8 RGB for the Qwen prompt (50 frames for 10 s);
  * `audio`: the file's own sound track when asked for (e.g. Qwen's `use_audio_in_video`).

Two recipes:
  * "mmaudio" (default): frames picked by presentation time (right for 29.97 fps and variable
    frame rates); Synchformer frames are resized on the short side (bicubic) and centre-cropped,
    as MMAudio prepares them; Qwen frames are squashed to 224×224 as the official API does.
  * "official": the Audio-Omni API exactly: decord-style stride sampling, k = ceil(fps / rate),
    and every frame squashed to 224×224 (bilinear) before the sync transform, which then changes
    nothing. On a 29.97 fps file its "25 fps" stream is really 15 fps (official_spec §2.4, P8).
Short clips are padded with their last frame in both recipes, as the official code does.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from aomni_jax.video.decode import SampledFrames, probe, read_audio_track, sample_frames
from aomni_jax.video.frames import resize_short_side_center_crop, resize_square

RECIPES = ("mmaudio", "official")
SYNC_FPS = 25.0
QWEN_FPS = 5.0
FRAME_SIZE = 224


@dataclasses.dataclass(frozen=True)
class VideoInputs:
  sync: SampledFrames  # frames [round(seconds·25), sync_size, sync_size, 3] uint8
  qwen: SampledFrames  # frames [round(seconds·5), 224, 224, 3] uint8
  audio: np.ndarray | None  # [channels, samples] float32 at audio_rate, or None
  duration: float | None  # the file's duration in seconds, when known

  @property
  def sync_frames(self) -> np.ndarray:
    return self.sync.frames

  @property
  def qwen_frames(self) -> np.ndarray:
    return self.qwen.frames


def read_video_inputs(path: str, *, seconds: float = 10.0, start: float = 0.0,
                      recipe: str = "mmaudio", sync_fps: float = SYNC_FPS,
                      qwen_fps: float = QWEN_FPS, size: int = FRAME_SIZE,
                      sync_size: int | None = None, audio_rate: int | None = None,
                      audio_channels: int = 1) -> VideoInputs:
  """Decodes `path` once into Synchformer frames, Qwen frames and (if audio_rate) its audio.

  `size` is the Qwen frames' side; `sync_size` the Synchformer's (default: the same).
  """
  if recipe not in RECIPES:
    raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
  sync_size = sync_size or size
  sync_transform = (resize_short_side_center_crop(sync_size) if recipe == "mmaudio"
                    else resize_square(sync_size))
  sync, qwen = sample_frames(path, [sync_fps, qwen_fps], seconds, start=start,
                             sampling="timestamps" if recipe == "mmaudio" else "stride",
                             transforms=[sync_transform, resize_square(size)])
  info = probe(path)
  audio = None
  if audio_rate is not None and info.has_audio:
    audio = read_audio_track(path, audio_rate, start=start, seconds=seconds,
                             channels=audio_channels)
  return VideoInputs(sync=sync, qwen=qwen, audio=audio, duration=info.duration)
