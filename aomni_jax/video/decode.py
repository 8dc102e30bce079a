"""Decoding video with PyAV and resampling it in time to the rates the models need.

One decoding pass serves several rates (Synchformer's 25 fps and Qwen's 5 fps), and only the frames
that are kept are converted to RGB, so a long 4K file costs no more memory than its output.

Two ways to pick the frame for output step j of a rate r:
  * "timestamps" (default, as MMAudio): the first decoded frame whose presentation time is
    ≥ start + j/r. Right for any frame rate, variable ones included.
  * "stride" (the official Audio-Omni API, which reads with decord): every k-th frame from
    `int(start·fps)`, k = ceil(fps / r), fps the stream's average rate. For a 29.97 fps source
    and r = 25 this gives k = 2, i.e. really 15 fps; use it to reproduce the official features.
Either way, a clip shorter than the window is padded by repeating its last kept frame, as the
official code does, and the result records which frames were used and how many are padding.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import av
import numpy as np
from etils import epath
from PIL import Image

SAMPLING = ("timestamps", "stride")
FrameTransform = Callable[[Image.Image], np.ndarray]


class VideoReadError(ValueError):
  """A file that cannot be used as video; `reason`: missing, empty, no_video, zero_length, corrupt."""

  _MESSAGES = {"missing": "does not exist; check the path",
               "empty": "is empty (0 bytes)",
               "no_video": "has no video stream (for audio only, give it as audio)",
               "zero_length": "has a video stream without frames (zero length)",
               "corrupt": "is not readable video"}

  def __init__(self, path: str, reason: str, detail: str = ""):
    what = self._MESSAGES.get(reason, reason.replace("_", " "))
    super().__init__(f"video file '{path}' {what}{' (' + detail + ')' if detail else ''}")
    self.path = path
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What the container says about its first video stream (and whether it has audio)."""

  width: int
  height: int
  average_fps: float
  duration: float | None  # seconds, None when the container does not know
  has_audio: bool


@dataclasses.dataclass(frozen=True)
class SampledFrames:
  """Frames at one output rate, with where each came from."""

  frames: np.ndarray  # [N, ...] whatever the transform returns, stacked (uint8 RGB by default)
  times: np.ndarray  # [N] float64 output grid times start + j / rate (seconds)
  source_indices: np.ndarray  # [N] int64 index of the decoded frame used, in presentation order
  source_times: np.ndarray  # [N] float64 presentation time of that frame (seconds)
  num_padded: int  # trailing entries that repeat the last real frame


def open_video(path: str) -> av.container.InputContainer:
  """Opens a local or remote (gs://…) file; raises VideoReadError for missing/empty/corrupt."""
  file = epath.Path(path)
  if not file.exists():
    raise VideoReadError(path, "missing")
  if file.stat().length == 0:
    raise VideoReadError(path, "empty", "zero bytes")
  try:
    source = str(file) if _is_local(path) else file.open("rb")
    return av.open(source)
  except av.error.FFmpegError as e:
    raise VideoReadError(path, "corrupt", str(e)) from None


def _is_local(path: str) -> bool:
  return "://" not in str(path)


def _video_stream(container, path: str) -> av.VideoStream:
  if not container.streams.video:
    raise VideoReadError(path, "no_video", "the file has no video stream")
  return container.streams.video[0]


def probe(path: str) -> VideoInfo:
  """Size, average frame rate, duration and audio presence, without decoding."""
  with open_video(path) as container:
    stream = _video_stream(container, path)
    rate = stream.average_rate or stream.guessed_rate
    duration = (float(stream.duration * stream.time_base) if stream.duration
                else container.duration / av.time_base if container.duration else None)
    return VideoInfo(width=stream.codec_context.width, height=stream.codec_context.height,
                     average_fps=float(rate) if rate else 0.0, duration=duration,
                     has_audio=bool(container.streams.audio))


class _RateSampler:
  """Decides, frame by frame, how many output steps of one rate a decoded frame fills."""

  def __init__(self, rate: float, count: int, start: float, sampling: str, average_fps: float):
    self.rate, self.count, self.start = rate, count, start
    self.stride = max(1, math.ceil(average_fps / rate)) if sampling == "stride" else 0
    self.first = int(start * average_fps) if sampling == "stride" else 0
    self.picked: list[tuple[int, float, np.ndarray | None]] = []

  @property
  def done(self) -> bool:
    return len(self.picked) >= self.count

  def repeats(self, index: int, time: float) -> int:
    if self.done:
      return 0
    if self.stride:
      offset = index - self.first
      return int(offset >= 0 and offset % self.stride == 0)
    n = 0
    while len(self.picked) + n < self.count and time >= self.start + (len(self.picked) + n) / self.rate:
      n += 1
    return n

  def result(self, stack: Callable[[list[np.ndarray]], np.ndarray]) -> SampledFrames:
    real = len(self.picked)
    padded = self.picked + [self.picked[-1]] * (self.count - real)
    return SampledFrames(frames=stack([p[2] for p in padded]),
                         times=self.start + np.arange(self.count) / self.rate,
                         source_indices=np.array([p[0] for p in padded], np.int64),
                         source_times=np.array([p[1] for p in padded], np.float64),
                         num_padded=self.count - real)


def _rgb(image: Image.Image) -> np.ndarray:
  return np.asarray(image, dtype=np.uint8)


def sample_frames(path: str, rates: Sequence[float], seconds: float, *, start: float = 0.0,
                  sampling: str = "timestamps",
                  transforms: Sequence[FrameTransform] | None = None) -> list[SampledFrames]:
  """round(seconds · rate) frames per rate from [start, start + seconds), in one decoding pass.

  `transforms[i]` turns a kept frame (an RGB PIL image) into an array for rate i (default: uint8
  [H, W, 3]); it runs once per kept frame, however often the frame is repeated.
  """
  if sampling not in SAMPLING:
    raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
  if seconds <= 0 or any(r <= 0 for r in rates):
    raise ValueError(f"seconds and rates must be > 0, got {seconds} and {list(rates)}")
  transforms = list(transforms or [_rgb] * len(rates))
  with open_video(path) as container:
    stream = _video_stream(container, path)
    stream.thread_type = "AUTO"
    fps = float(stream.average_rate or stream.guessed_rate or 0.0)
    if sampling == "stride" and fps <= 0:
      raise VideoReadError(path, "corrupt", "the stream has no frame rate for stride sampling")
    samplers = [_RateSampler(r, round(seconds * r), start, sampling, fps) for r in rates]
    try:
      for index, frame in enumerate(container.decode(stream)):
        if all(s.done for s in samplers):
          break
        time = float(frame.time) if frame.time is not None else index / fps
        if sampling == "timestamps" and time < start:
          continue
        image = None
        for sampler, transform in zip(samplers, transforms):
          n = sampler.repeats(index, time)
          if n:
            image = image or frame.to_image()
            sampler.picked += [(index, time, transform(image))] * n
    except av.error.FFmpegError as e:
      if not any(s.picked for s in samplers):
        raise VideoReadError(path, "corrupt", str(e)) from None
      # A damaged tail: keep what was decoded and pad, as a player would freeze the last frame.
  if not all(s.picked for s in samplers):
    raise VideoReadError(path, "zero_length",
                         f"no frame at or after {start:g} s could be decoded")
  return [s.result(np.stack) for s in samplers]


def read_audio_track(path: str, sample_rate: int, *, start: float = 0.0,
                     seconds: float | None = None, channels: int = 1) -> np.ndarray | None:
  """The first audio stream as float32 [channels, samples] at `sample_rate`; None if it has none."""
  with open_video(path) as container:
    if not container.streams.audio:
      return None
    layout = "mono" if channels == 1 else "stereo"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
    chunks = []
    try:
      for frame in container.decode(container.streams.audio[0]):
        chunks += [f.to_ndarray() for f in resampler.resample(frame)]
      chunks += [f.to_ndarray() for f in resampler.resample(None)]
    except av.error.FFmpegError as e:
      raise VideoReadError(path, "corrupt", f"audio track: {e}") from None
  audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
  first = int(round(start * sample_rate))
  last = None if seconds is None else first + int(round(seconds * sample_rate))
  return np.ascontiguousarray(audio[:, first:last], dtype=np.float32)
