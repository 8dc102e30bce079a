"""Video decoding: frame picks checked against PyAV's own decode (29.97 fps and variable frame
rate), the official stride recipe, padding, the audio track, the frame transforms, bad inputs and
one real clip from a Debian package."""

import math
import shutil
import subprocess

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from aomni_jax.video.decode import VideoReadError, probe, read_audio_track, sample_frames
from aomni_jax.video.frames import resize_short_side_center_crop, resize_square
from aomni_jax.video.inputs import read_video_inputs
from tests.video.conftest import decode_all, gray_level


def _expected_timestamp_picks(times: np.ndarray, rate: float, count: int, start: float = 0.0):
  """The first frame at or after each grid time start + j / rate (then last-frame padding)."""
  grid = start + np.arange(count) / rate
  picks = np.searchsorted(times, grid, side="left")
  real = int(np.sum(picks < len(times)))
  return np.where(picks < len(times), picks, picks[real - 1] if real else 0), count - real


@pytest.mark.parametrize("clip", ["ntsc_clip", "vfr_clip"])
@pytest.mark.parametrize("rate,start", [(25.0, 0.0), (5.0, 0.0), (25.0, 0.7)])
def test_timestamp_sampling_matches_pyav(clip, rate, start, request):
  path = request.getfixturevalue(clip)
  times, frames = decode_all(path)
  if clip == "vfr_clip":
    assert np.ptp(np.diff(times)) > 0.05  # really variable
  seconds = 2.0
  (got,) = sample_frames(str(path), [rate], seconds, start=start)
  count = round(seconds * rate)
  expected, padded = _expected_timestamp_picks(times, rate, count, start)
  np.testing.assert_array_equal(got.source_indices, expected)
  np.testing.assert_allclose(got.source_times, times[expected], atol=1e-9)
  np.testing.assert_allclose(got.times, start + np.arange(count) / rate)
  assert got.num_padded == padded
  np.testing.assert_array_equal(got.frames, frames[expected])
  # Each kept frame is the earliest one shown at or after its grid time.
  assert np.all(got.source_times[:count - padded] >= got.times[:count - padded] - 1e-9)


def test_short_clip_is_padded_with_its_last_frame(ntsc_clip):
  times, frames = decode_all(ntsc_clip)
  sync, qwen = sample_frames(str(ntsc_clip), [25.0, 5.0], 10.0)
  assert sync.frames.shape == (250, 48, 64, 3) and qwen.frames.shape == (50, 48, 64, 3)
  last_real = 250 - sync.num_padded
  assert last_real == math.ceil(times[-1] * 25) + (times[-1] * 25 % 1 == 0)
  assert np.all(sync.source_indices[last_real - 1:] == len(times) - 1)
  np.testing.assert_array_equal(sync.frames[-1], frames[-1])
  assert qwen.num_padded == 50 - 15


def test_official_stride_recipe_on_2997_fps(ntsc_clip):
  """decord-style: k = ceil(29.97 / 25) = 2, so the '25 fps' stream is really 15 fps."""
  times, frames = decode_all(ntsc_clip)
  sync, qwen = sample_frames(str(ntsc_clip), [25.0, 5.0], 10.0, sampling="stride")
  np.testing.assert_array_equal(sync.source_indices[:45], np.arange(0, 90, 2))
  assert sync.num_padded == 250 - 45
  np.testing.assert_array_equal(qwen.source_indices[:15], np.arange(0, 90, 6))
  np.testing.assert_array_equal(sync.frames[:45], frames[0:90:2])
  np.testing.assert_array_equal(sync.frames[45:], np.broadcast_to(frames[88], (205,) + frames.shape[1:]))
  for j, index in enumerate(sync.source_indices[:45]):
    assert abs(int(sync.frames[j, 0, 0, 0]) - gray_level(int(index))) <= 2


def test_video_inputs_and_audio_track(ntsc_clip):
  inputs = read_video_inputs(str(ntsc_clip), seconds=2.0, audio_rate=16000)
  assert inputs.sync_frames.shape == (50, 224, 224, 3) and inputs.sync_frames.dtype == np.uint8
  assert inputs.qwen_frames.shape == (10, 224, 224, 3)
  assert inputs.audio.shape == (1, 32000)
  spectrum = np.abs(np.fft.rfft(inputs.audio[0, 4000:20000]))
  assert abs(np.argmax(spectrum) * 16000 / 16000 - 440) <= 2
  info = probe(str(ntsc_clip))
  assert (info.width, info.height, info.has_audio) == (64, 48, True)
  assert abs(info.average_fps - 29.97) < 0.01


def test_video_without_audio_gives_none(vfr_clip):
  assert read_audio_track(str(vfr_clip), 16000) is None
  assert read_video_inputs(str(vfr_clip), seconds=1.0, audio_rate=16000).audio is None


def test_short_side_resize_and_centre_crop_keep_the_centre():
  # 96×48 (w×h): a 24-wide white band in the middle, red margins of 8 px at both ends.
  pixels = np.zeros((48, 96, 3), np.uint8)
  pixels[:, 36:60] = 255
  pixels[:, :8, 0] = pixels[:, -8:, 0] = 255
  out = resize_short_side_center_crop(224)(Image.fromarray(pixels))
  assert out.shape == (224, 224, 3)
  # Scale 224/48: the width becomes 448, the crop starts at 112; the band sits at 56..168.
  row = out[112, :, 1].astype(int)
  assert np.all(row[70:154] > 230) and np.all(row[:40] < 20) and np.all(row[-40:] < 20)
  assert out[:, :, 0].max() < 20 or np.all(out[:, :20, 0] < 20)  # red margins cropped away
  square = resize_square(224)(Image.fromarray(pixels))
  assert square.shape == (224, 224, 3) and square[112, 0, 0] > 200  # squashed, margins kept


def test_bad_inputs_raise_one_clear_error(tmp_path, ntsc_clip):
  cases = {"missing": tmp_path / "nope.mp4", "empty": tmp_path / "empty.mp4",
           "corrupt": tmp_path / "garbage.mp4", "no_video": tmp_path / "tone.wav"}
  cases["empty"].write_bytes(b"")
  cases["corrupt"].write_bytes(np.random.default_rng(0).bytes(4096))
  sf.write(cases["no_video"], np.zeros(4410, np.float32), 44100)
  for reason, path in cases.items():
    with pytest.raises(VideoReadError) as info:
      sample_frames(str(path), [25.0], 1.0)
    assert info.value.reason == reason, (reason, str(info.value))
    assert str(path) in str(info.value)
  with pytest.raises(VideoReadError) as info:
    sample_frames(str(ntsc_clip), [25.0], 1.0, start=60.0)
  assert info.value.reason == "zero_length"


REAL_CLIP = "./usr/share/help/C/gnome-help/figures/display-dual-monitors.webm"


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (Debian)")
def test_real_clip_from_a_debian_package(tmp_path):
  """gnome-user-docs ships a real screen recording: VP8 WebM, 15 fps, 1024×768, 37 s, no sound.

  Only that file is unpacked from the .deb (the package holds 64 MB of translated help).
  """
  download = subprocess.run(["apt-get", "download", "gnome-user-docs"], cwd=tmp_path,
                            capture_output=True, text=True)
  debs = list(tmp_path.glob("gnome-user-docs_*.deb"))
  if download.returncode != 0 or not debs:
    pytest.skip(f"gnome-user-docs could not be downloaded: {download.stderr.strip()[-200:]}")
  tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(debs[0])], capture_output=True,
                       check=True).stdout
  subprocess.run(["tar", "-x", REAL_CLIP], input=tar, cwd=tmp_path, check=True)
  path = str(tmp_path / REAL_CLIP)
  times, _ = decode_all(path, until=4.5)
  inputs = read_video_inputs(path, seconds=4.0)
  assert inputs.sync_frames.shape == (100, 224, 224, 3) and inputs.sync.num_padded == 0
  assert inputs.qwen_frames.shape == (20, 224, 224, 3)
  expected, _ = _expected_timestamp_picks(times, 25.0, 100)
  np.testing.assert_array_equal(inputs.sync.source_indices, expected)
  assert inputs.sync_frames.std() > 10  # real picture content
  assert inputs.audio is None and abs(inputs.duration - 37.13) < 0.1
  with av.open(path) as container:
    assert container.streams.video[0].codec_context.name == "vp8"


def test_understand_reads_the_whole_video_and_its_sound(ntsc_clip, vfr_clip):
  from aomni_jax.cli.understand import load_video
  frames, sound = load_video(str(ntsc_clip), 2.0)
  assert frames.shape == (6, 48, 64, 3)  # 3 s at 2 fps, full size (the processor resizes)
  assert sound.ndim == 1 and abs(len(sound) - 3 * 16000) < 400
  assert load_video(str(ntsc_clip), 2.0, with_audio=False)[1] is None
  frames, sound = load_video(str(vfr_clip), 5.0)
  assert sound is None and len(frames) == round(probe(str(vfr_clip)).duration * 5)
