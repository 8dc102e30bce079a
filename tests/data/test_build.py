"""Dataset build: bad files are skipped and counted, output is independent of worker count."""

import glob
import os

import numpy as np
import soundfile as sf

from aomni_jax.data import build
from aomni_jax.data import checks
from aomni_jax.data import records
from aomni_jax.data import sources
from tests.data.conftest import EXPECTED_DROPS, harmonic_tone, small_build


def test_every_bad_file_is_dropped_with_its_reason(tiny_dataset):
  manifest = records.Manifest.load(tiny_dataset)
  assert manifest.dropped == EXPECTED_DROPS
  assert manifest.records > 0 and manifest.examples == sum(manifest.per_task.values())
  assert {"add", "remove", "extract", "t2a", "t2m", "tts"} <= set(manifest.per_task)
  assert manifest.licences == {"CC0": sum(manifest.licences.values())}


def test_manifest_counts_match_the_shards(tiny_dataset):
  manifest = records.Manifest.load(tiny_dataset)
  counts = [np.load(records.counts_path(p)) for p in manifest.shard_paths(tiny_dataset)]
  assert sum(len(c) for c in counts) == manifest.records
  assert sum(int(c.sum()) for c in counts) == manifest.examples


def test_output_bytes_do_not_depend_on_worker_count(clip_folder, tiny_dataset, tmp_path):
  clips = sources.read_table(clip_folder)
  build.build_dataset(clips, str(tmp_path), small_build(workers=1), progress=False)
  for path in sorted(glob.glob(os.path.join(tiny_dataset, "*.array_record"))):
    with open(path, "rb") as ours, open(tmp_path / os.path.basename(path), "rb") as theirs:
      assert ours.read() == theirs.read(), path


def test_plan_depends_on_seed_and_spreads_events(clip_folder):
  usable = ("beep.wav", "hum.wav", "burst.flac", "rain.wav", "wind.flac")
  clips = [c for c in sources.read_table(clip_folder) if os.path.basename(c.path) in usable]
  plan = build.plan_jobs(clips, small_build(mixtures=9), soundfont=None)
  mixes = [job for job in plan if job.kind == "mix"]
  events = [job.clips[1].label for job in mixes]
  assert len(mixes) == 9
  assert sorted(events) == ["beep"] * 3 + ["burst"] * 3 + ["hum"] * 3
  other = build.plan_jobs(clips, small_build(mixtures=9, seed=99), soundfont=None)
  assert [j.clips for j in plan] != [j.clips for j in other]


def test_a_failing_item_is_counted_not_fatal(tmp_path):
  good = str(tmp_path / "good.wav")
  sf.write(good, harmonic_tone(300, 0.5).T, 44100)
  vanished = sources.Clip(str(tmp_path / "deleted_after_check.wav"), "x", "event")
  jobs = [build.Job("single", 0, (sources.Clip(good, "tone", "event"),)),
          build.Job("single", 1, (vanished,))]
  manifest = build.write_dataset(jobs, str(tmp_path / "out"), small_build(num_shards=1),
                                 checks.DropCounter(), progress=False)
  assert manifest.records == 1
  assert manifest.dropped == {"synthesis_error:AudioReadError": 1}


def test_voice_clone_pairs_join_two_clips_of_one_speaker():
  speech = [sources.Clip(f"{who}{i}.wav", "speech", "speech", transcript=f"t{i}", speaker=who)
            for who in ("ann", "bob") for i in range(3)]
  lonely = sources.Clip("solo.wav", "speech", "speech", transcript="x", speaker="cy")
  plan = build.plan_jobs(speech + [lonely], small_build(mixtures=0, max_singles_per_kind=0,
                                                         voice_clone_pairs=6), soundfont=None)
  clones = [job for job in plan if job.kind == "clone"]
  assert len(clones) == 6
  for job in clones:
    prompt, utterance = job.clips
    assert prompt.speaker == utterance.speaker != "cy" and prompt.path != utterance.path
  assert {job.clips[0].speaker for job in clones} == {"ann", "bob"}


def test_mixtures_with_several_events_keep_the_edited_one_distinct(clip_folder):
  usable = ("beep.wav", "hum.wav", "burst.flac", "rain.wav", "wind.flac")
  clips = [c for c in sources.read_table(clip_folder) if os.path.basename(c.path) in usable]
  plan = build.plan_jobs(clips, small_build(mixtures=12, max_events_per_mixture=3),
                         soundfont=None)
  counts = [len(job.clips) - 1 for job in plan if job.kind == "mix"]
  assert set(counts) > {1} and max(counts) <= 3
  for job in plan:
    if job.kind == "mix":
      events = [c.path for c in job.clips[1:]]
      assert len(set(events)) == len(events)
