"""Muxing generated audio onto the source video."""

import av
import numpy as np
import pytest

from aomni_jax.video.decode import VideoReadError, read_audio_track
from aomni_jax.video.mux import mux_audio
from tests.video.conftest import decode_all


def test_mux_writes_the_audio_on_the_video_span(ntsc_clip, tmp_path):
  rate = 44100
  t = np.arange(int(2.0 * rate)) / rate
  stereo = np.stack([0.4 * np.sin(2 * np.pi * 1000 * t), 0.4 * np.sin(2 * np.pi * 500 * t)])
  out = tmp_path / "v2a.mp4"
  written = mux_audio(str(ntsc_clip), stereo, rate, str(out), start=0.5)
  assert written == pytest.approx(2.0)
  with av.open(str(out)) as container:
    video, audio = container.streams.video[0], container.streams.audio[0]
    assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
    assert audio.channels == 2 and audio.rate == rate
  times, frames = decode_all(out)
  source_times, source_frames = decode_all(ntsc_clip)
  first = int(np.searchsorted(source_times, 0.5 - 1e-9))
  assert len(times) == int(np.sum((source_times >= 0.5 - 1e-9) & (source_times < 2.5)))
  np.testing.assert_allclose(times, source_times[first:first + len(times)] - source_times[first],
                             atol=2e-3)
  assert np.abs(frames.astype(int) - source_frames[first:first + len(times)]).max() <= 3
  sound = read_audio_track(str(out), rate, channels=2)
  assert abs(sound.shape[1] - stereo.shape[1]) < 2048  # AAC priming/padding only
  for channel, freq in ((0, 1000), (1, 500)):
    spectrum = np.abs(np.fft.rfft(sound[channel, 8192:8192 + rate]))
    assert abs(np.argmax(spectrum) - freq) <= 2


def test_mux_stops_at_the_end_of_a_shorter_video(ntsc_clip, tmp_path):
  written = mux_audio(str(ntsc_clip), np.zeros(10 * 16000, np.float32), 16000,
                      str(tmp_path / "short.mp4"))
  assert written == pytest.approx(3.0, abs=0.05)


def test_mux_rejects_a_file_without_video(tmp_path):
  import soundfile as sf
  wav = tmp_path / "a.wav"
  sf.write(wav, np.zeros(1000, np.float32), 16000)
  with pytest.raises(VideoReadError, match="no video"):
    mux_audio(str(wav), np.zeros(100, np.float32), 16000, str(tmp_path / "x.mp4"))
