"""Laying generated audio onto the original video: what a V2A / V2M user wants to watch.

The video is re-encoded (H.264, near-transparent quality) over the span the audio covers, so the
result starts and ends exactly with the audio instead of on the source's keyframes; frames keep
their own timestamps, so variable frame rates survive. The audio is encoded as AAC. Remote
(gs://…) paths are read and written through etils.epath.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
from etils import epath

from aomni_jax.video.decode import VideoReadError, open_video

_CRF = "18"


def mux_audio(video_path: str, audio: np.ndarray, sample_rate: int, out_path: str, *,
              start: float = 0.0) -> float:
  """Writes `out_path` (mp4): the video from `start` for the audio's length, with `audio` on it.

  audio: [channels, samples] or [samples] float in [−1, 1]. Returns the written duration (s):
  the shorter of the audio and the rest of the video.
  """
  audio = np.atleast_2d(np.asarray(audio, np.float32))
  if audio.shape[0] > 2:
    raise ValueError(f"audio must be mono or stereo [channels, samples], got {audio.shape}")
  duration = audio.shape[1] / sample_rate
  buffer = io.BytesIO()
  with open_video(video_path) as source:
    if not source.streams.video:
      raise VideoReadError(video_path, "no_video", "the file has no video stream")
    in_stream = source.streams.video[0]
    rate = in_stream.average_rate or in_stream.guessed_rate or Fraction(25)
    with av.open(buffer, "w", format="mp4") as out:
      video = out.add_stream("libx264", rate=rate, options={"crf": _CRF})
      video.width = in_stream.codec_context.width - in_stream.codec_context.width % 2
      video.height = in_stream.codec_context.height - in_stream.codec_context.height % 2
      video.pix_fmt = "yuv420p"
      video.time_base = Fraction(1, 90000)
      sound = out.add_stream("aac", rate=sample_rate,
                             layout="mono" if audio.shape[0] == 1 else "stereo")
      last_time = _encode_video(source, in_stream, video, out, start, duration)
      written = min(duration, last_time)
      _encode_audio(audio[:, :int(round(written * sample_rate))], sample_rate, sound, out)
  epath.Path(out_path).write_bytes(buffer.getvalue())
  return written


def _encode_video(source, in_stream, video, out, start: float, duration: float) -> float:
  """Re-encodes frames in [start, start + duration); returns the covered time (s)."""
  covered, previous = 0.0, None
  for frame in source.decode(in_stream):
    time = float(frame.time) - start
    if time < 0:
      continue
    if time >= duration:
      break
    image = frame.reformat(width=video.width, height=video.height, format="yuv420p")
    image.pts, image.time_base = int(round(time * 90000)), video.time_base
    if previous is not None and image.pts <= previous:
      continue  # duplicate timestamps would be rejected by the muxer
    previous = image.pts
    out.mux(video.encode(image))
    covered = time + 1.0 / float(video.average_rate or 25)
  out.mux(video.encode(None))
  return covered


def _encode_audio(audio: np.ndarray, sample_rate: int, sound, out) -> None:
  frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(np.clip(audio, -1.0, 1.0)),
                                     format="fltp", layout=sound.layout.name)
  frame.sample_rate, frame.pts = sample_rate, 0
  out.mux(sound.encode(frame))
  out.mux(sound.encode(None))
