"""V2A / V2M training items from a clip table with videos, and their sync features."""

import dataclasses

import numpy as np
import pytest
from flax import nnx

from aomni_jax.config import Config, MelConfig, ModelConfig, SyncConfig, SynchformerConfig
from aomni_jax.data import build, loader, records, sources, synth, templates
from aomni_jax.data.video_features import SyncFeatures
from aomni_jax.models.synchformer import Synchformer, encode_video
from aomni_jax.video.inputs import read_video_inputs
from tests.video.conftest import NTSC, write_video

RATE = 44100
CONFIG = build.BuildConfig(seed=1, mixtures=0, style_pairs=0, voice_clone_pairs=0,
                           max_singles_per_kind=0, workers=1,
                           synth=synth.SynthConfig(clip_seconds=1.0))


@pytest.fixture(scope="module")
def clip_table(tmp_path_factory):
  """A 2 s video with a tone, listed twice (event → V2A, music → V2M), and a broken video."""
  root = tmp_path_factory.mktemp("videos")
  tone = 0.3 * np.sin(2 * np.pi * 330 * np.arange(2 * 48000) / 48000)
  write_video(root / "clip.mp4", np.arange(60) * 1001 / 30000, NTSC, audio=tone)
  (root / "broken.mp4").write_bytes(b"\x00" * 2048)
  table = root / "clips.csv"
  table.write_text("path,label,kind,caption,video\n"
                   "clip.mp4,tone,event,a steady tone,clip.mp4\n"
                   "clip.mp4,tone,music,,clip.mp4\n"
                   "clip.mp4,tone,event,,broken.mp4\n")
  return sources.read_table(str(table))


def test_clips_with_videos_become_v2a_and_v2m_examples(clip_table):
  good, _, broken = clip_table
  assert good.video.endswith("clip.mp4")
  assert build._clip_problem(broken, CONFIG.checks) == "video_corrupt"  # dropped at validation
  jobs = build.plan_jobs(clip_table[:2], CONFIG, None)
  assert [j.kind for j in jobs] == ["video", "video"]
  decoder = loader.ExampleDecoder(loader.Shapes(mel_frames=RATE, target_frames=RATE))
  batch = []
  for job in jobs:
    item = build.make_item(job, CONFIG)
    data = records.encode_record(item.item_id, item.stems, item.examples, item.meta, RATE,
                                 "flac16")
    batch.append(decoder((data, 0, job.index)))
  assert [templates.TASKS[b["task_id"]] for b in batch] == ["v2a", "v2m"]
  assert [str(b["instruction"]) for b in batch] == ["a steady tone", ""]
  assert all(str(b["video"]) == good.video for b in batch)
  # The 2 s clip is longer than the 1 s window: the target is the window from video_start.
  audio, rate = read_video_inputs(good.video, seconds=2.0, audio_rate=RATE).audio, RATE
  start = int(round(float(batch[0]["video_start"]) * rate))
  target = batch[0]["target_audio"].mean(axis=0)
  window = audio[0, start:start + RATE]
  assert np.corrcoef(target[:len(window)], window)[0, 1] > 0.99
  assert templates.chat_prompt("v2a", "x").endswith("x\n<|vision_bos|><|VIDEO|><|vision_eos|>"
                                                    "<|im_end|>\n<|im_start|>assistant\n")


def test_sync_features_are_zero_without_a_video(clip_table):
  good = clip_table[0]
  synchformer_cfg = SynchformerConfig(embed_dim=32, depth=1, num_heads=1, image_size=32,
                                      patch_size=16)
  config = Config(model=ModelConfig(
      mel=MelConfig(window_seconds=1.0), synchformer=synchformer_cfg,
      sync=SyncConfig(input_dim=32, seq_len=16)))  # 25 frames: 2 segments (stride 8) × 8 tokens
  model = Synchformer(synchformer_cfg, rngs=nnx.Rngs(0))
  features = SyncFeatures(model, config)(["", good.video, "", good.video], [0.0, 0.0, 0.0, 0.5])
  assert features.shape == (4, 16, 32)
  assert not features[[0, 2]].any() and np.abs(features[[1, 3]]).min(axis=(1, 2)).max() > 0
  frames = read_video_inputs(good.video, seconds=1.0, sync_size=32).sync_frames
  np.testing.assert_allclose(features[1], nnx.jit(encode_video)(model, frames[None])[0],
                             atol=1e-4)
  assert np.abs(features[3] - features[1]).max() > 1e-3  # a later start, other frames
  with pytest.raises(ValueError, match="--synchformer"):
    SyncFeatures(None, config)([good.video], [0.0])
  assert not SyncFeatures(None, config)(["", ""], [0.0, 0.0]).any()


def test_clip_table_round_trips_the_video_column(clip_table, tmp_path):
  path = tmp_path / "clips.csv"
  sources.write_table(list(clip_table), str(path))
  again = sources.read_table(str(path), folder="/")
  assert [c.video for c in again] == [c.video for c in clip_table]
  assert dataclasses.replace(clip_table[0], video="") != clip_table[0]
