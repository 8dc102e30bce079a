"""Synthetic videos written with PyAV: frame i is a flat grey of level (37·i) mod 256, encoded
losslessly, so every decoded frame can be told apart. Times are exact presentation times."""

from fractions import Fraction

import av
import numpy as np
import pytest

SIZE = (64, 48)  # width, height


def gray_level(index: int) -> int:
  return (index * 37) % 256


def write_video(path, times, rate: Fraction, *, size=SIZE, audio=None, audio_rate=48000):
  """H.264 (qp 0) mp4 with frames at `times` (s); optional mono float `audio`."""
  with av.open(str(path), "w") as container:
    stream = container.add_stream("libx264", rate=rate, options={"qp": "0"})
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.time_base = stream.codec_context.time_base = Fraction(1, 90000)
    sound = None
    if audio is not None:
      sound = container.add_stream("aac", rate=audio_rate, layout="mono")
    for i, t in enumerate(times):
      pixels = np.full((size[1], size[0], 3), gray_level(i), np.uint8)
      frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
      frame.pts, frame.time_base = int(round(t * 90000)), stream.time_base
      container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    if sound is not None:
      frame = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="fltp",
                                         layout="mono")
      frame.sample_rate, frame.pts = audio_rate, 0
      container.mux(sound.encode(frame))
      container.mux(sound.encode(None))
  return path


def decode_all(path, until: float = np.inf):
  """PyAV's own view: (times [N], RGB frames [N, H, W, 3]) of every frame before `until` s."""
  with av.open(str(path)) as container:
    frames = []
    for frame in container.decode(video=0):
      if frame.time >= until:
        break
      frames.append(frame)
    return (np.array([float(f.time) for f in frames]),
            np.stack([f.to_ndarray(format="rgb24") for f in frames]))


NTSC = Fraction(30000, 1001)


@pytest.fixture(scope="session")
def ntsc_clip(tmp_path_factory):
  """3 s at 29.97 fps with a 440 Hz tone."""
  tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(3 * 48000) / 48000)
  return write_video(tmp_path_factory.mktemp("video") / "ntsc.mp4",
                     np.arange(90) * 1001 / 30000, NTSC, audio=tone)


@pytest.fixture(scope="session")
def vfr_clip(tmp_path_factory):
  """60 frames with random gaps of 10–120 ms (about 3.9 s)."""
  gaps = np.random.default_rng(0).uniform(0.01, 0.12, 59)
  times = np.concatenate([[0.0], np.cumsum(gaps)])
  return write_video(tmp_path_factory.mktemp("video") / "vfr.mp4", times, Fraction(30))
