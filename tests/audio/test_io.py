"""Audio file I/O: round trips, the PyAV fallback and clear errors for unusable files."""

import os

import av
import numpy as np
import pytest
from etils.epath import testing as epath_testing

from aomni_jax.audio import io as audio_io

RATE = 44100


def test_flac_and_wav_round_trip(tmp_path):
  audio = (0.5 * np.sin(np.linspace(0, 300, 2 * RATE))).reshape(2, RATE).astype(np.float32)
  for codec, tolerance in (("flac16", 1 / 32767), ("flac24", 1e-6), ("wav_f32", 0)):
    path = str(tmp_path / f"x.{codec}")
    audio_io.write_audio(path, audio, RATE, codec)
    read, rate = audio_io.read_audio(path)
    assert rate == RATE and read.shape == audio.shape
    assert np.max(np.abs(read - audio)) <= tolerance
    decoded, _ = audio_io.decode_audio(audio_io.encode_audio(audio, RATE, codec))
    assert np.max(np.abs(decoded - audio)) <= tolerance


def test_pyav_fallback_reads_aac_in_mp4(tmp_path):
  path = str(tmp_path / "tone.m4a")
  tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.float32)
  with av.open(path, "w") as container:
    stream = container.add_stream("aac", rate=RATE, layout="mono")
    frame = av.AudioFrame.from_ndarray(tone[None], format="fltp", layout="mono")
    frame.sample_rate = RATE
    for packet in stream.encode(frame):
      container.mux(packet)
    for packet in stream.encode(None):
      container.mux(packet)
  audio, rate = audio_io.read_audio(path)
  assert rate == RATE and audio.shape[0] == 1
  assert abs(audio.shape[1] - RATE) < 4096  # codec priming/padding only
  assert np.sqrt(np.mean(audio**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)


@pytest.mark.parametrize("content, reason", [(None, "missing"), (b"", "empty"),
                                             (b"RIFF....WAVEnot really audio" * 4, "corrupt")])
def test_unusable_files_raise_with_a_reason(tmp_path, content, reason):
  path = tmp_path / "bad.wav"
  if content is not None:
    path.write_bytes(content)
  with pytest.raises(audio_io.AudioReadError) as error:
    audio_io.read_audio(str(path))
  assert error.value.reason == reason
  assert "bad.wav" in str(error.value)


def test_a_uri_is_read_through_epath(tmp_path):
  """gs:// paths go through etils.epath (here mocked onto tmp_path) and decode from memory."""
  audio = (0.25 * np.sin(np.linspace(0, 100, RATE))).reshape(1, RATE).astype(np.float32)
  audio_io.write_audio(str(tmp_path / "tone.flac"), audio, RATE, "flac24")

  def local(path) -> str:
    return str(tmp_path / str(path).rsplit("/", 1)[1])

  with epath_testing.mock_epath(exists=lambda _, path: os.path.exists(local(path)),
                                isdir=lambda _, path: False,
                                stat=lambda stat, path: stat(local(path)),
                                open=lambda _, path, mode="rb", **kw: open(local(path), mode)):
    read, rate = audio_io.read_audio("gs://bucket/clips/tone.flac")
    with pytest.raises(audio_io.AudioReadError, match="'gs://bucket/clips/nope.wav' does not"):
      audio_io.read_audio("gs://bucket/clips/nope.wav")
  assert rate == RATE and np.max(np.abs(read - audio)) <= 1e-6
