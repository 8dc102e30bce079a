"""Reading and writing audio: soundfile first, PyAV for what libsndfile cannot open.

Every failure is raised as `AudioReadError` with a short machine-readable `reason`, so a dataset
builder can count and skip bad files instead of crashing on them.
"""

from __future__ import annotations

import io
import os

import av
import numpy as np
import soundfile as sf
from etils import epath

# Raw streams that have no container header, keyed by file suffix, with the FFmpeg demuxer to use.
_RAW_FORMATS = {".g722": "g722", ".gsm": "gsm", ".ulaw": "mulaw", ".alaw": "alaw"}

# Codec name used in records -> (soundfile format, soundfile subtype).
CODECS = {
    "flac16": ("FLAC", "PCM_16"),
    "flac24": ("FLAC", "PCM_24"),
    "wav_f32": ("WAV", "FLOAT"),
}


_REASON_TEXT = {
    "missing": "does not exist; check the path",
    "directory": "is a directory; give an audio file",
    "empty": "holds no audio",
    "corrupt": "is not readable audio (corrupt, or a format neither libsndfile nor FFmpeg reads)",
}


class AudioReadError(ValueError):
  """A file that cannot be used as audio; `reason` is one of: missing, directory, empty, corrupt.

  The message names the file and what is wrong with it, since a console script prints it as is.
  """

  def __init__(self, path: str, reason: str, detail: str = ""):
    super().__init__(f"audio file {path!r} {_REASON_TEXT[reason]}"
                     f"{' (' + detail + ')' if detail else ''}")
    self.path = path
    self.reason = reason


def read_audio(path: str) -> tuple[np.ndarray, int]:
  """Returns (audio [channels, frames] float32, sample rate) for any audio or video file.

  `path` may be a URI (gs://...): remote files are read into memory through etils.epath.
  """
  file = epath.Path(path)
  if not file.exists():
    raise AudioReadError(path, "missing")
  if file.is_dir():
    raise AudioReadError(path, "directory")
  if file.stat().length == 0:
    raise AudioReadError(path, "empty", "zero bytes")
  content = None if os.path.exists(path) else file.read_bytes()

  def source() -> str | io.BytesIO:  # a fresh handle per reader: each one consumes what it reads
    return path if content is None else io.BytesIO(content)

  suffix = file.suffix.lower()
  if suffix not in _RAW_FORMATS:
    try:
      data, rate = sf.read(source(), dtype="float32", always_2d=True)
      return _checked(path, data.T, rate)
    except sf.LibsndfileError:
      pass  # Not a libsndfile format (e.g. AAC, MP4 video): let FFmpeg try.
  return _checked(path, *_read_with_pyav(path, source(), _RAW_FORMATS.get(suffix)))


def _read_with_pyav(path: str, source: str | io.BytesIO,
                    raw_format: str | None) -> tuple[np.ndarray, int]:
  try:
    with av.open(source, format=raw_format) as container:
      if not container.streams.audio:
        raise AudioReadError(path, "corrupt", "no audio stream")
      stream = container.streams.audio[0]
      resampler = av.AudioResampler(format="fltp")
      chunks, rate = [], stream.rate
      for frame in container.decode(stream):
        for out in resampler.resample(frame):
          chunks.append(out.to_ndarray())
          rate = out.sample_rate
  except av.FFmpegError as error:
    raise AudioReadError(path, "corrupt", str(error)) from error
  if not chunks:
    raise AudioReadError(path, "empty", "no decoded frames")
  return np.concatenate(chunks, axis=1).astype(np.float32), rate


def _checked(path: str, audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
  if audio.shape[1] == 0:
    raise AudioReadError(path, "empty", "no samples")
  if not np.all(np.isfinite(audio)):
    raise AudioReadError(path, "corrupt", "non-finite samples")
  return np.ascontiguousarray(audio), int(rate)


def write_audio(path: str, audio: np.ndarray, rate: int, codec: str = "flac16") -> None:
  """Writes [channels, frames] float audio; the codec names one entry of `CODECS`."""
  fmt, subtype = CODECS[codec]
  sf.write(path, np.asarray(audio).T, rate, format=fmt, subtype=subtype)


def encode_audio(audio: np.ndarray, rate: int, codec: str = "flac16") -> bytes:
  """Encodes [channels, frames] float audio to bytes, for storing inside a record."""
  fmt, subtype = CODECS[codec]
  buffer = io.BytesIO()
  sf.write(buffer, np.asarray(audio).T, rate, format=fmt, subtype=subtype)
  return buffer.getvalue()


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
  """Inverse of `encode_audio`: returns ([channels, frames] float32, rate)."""
  audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
  return np.ascontiguousarray(audio.T), rate
