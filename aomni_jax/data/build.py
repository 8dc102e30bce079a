"""Dataset build: validate clips → plan items from one seed → synthesise and write shards in
parallel → manifest.

Item i always goes to shard i % num_shards and draws its randomness from (seed, i), so the bytes
written do not depend on the number of worker processes or their scheduling.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import multiprocessing
import os

import numpy as np
import tqdm
from etils import epath

from aomni_jax.audio import dsp
from aomni_jax.audio import io as audio_io
from aomni_jax.data import checks as checks_lib
from aomni_jax.data import records
from aomni_jax.data import storage
from aomni_jax.data import synth
from aomni_jax.data.sources import Clip

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BuildConfig:
  """How many items of each family to make; caps keep the default dataset small."""
  seed: int = 0
  mixtures: int = 40
  max_events_per_mixture: int = 1  # > 1: each mixture holds 1..N events; the edit targets one
  style_pairs: int = 12
  max_singles_per_kind: int = 20
  voice_clone_pairs: int = 16  # TTS with a voice prompt: two utterances of one speaker
  num_shards: int = 8
  workers: int = max(1, os.cpu_count() or 1)
  codec: str = "flac16"
  checks: checks_lib.ClipChecks = checks_lib.ClipChecks()
  synth: synth.SynthConfig = synth.SynthConfig()


@dataclasses.dataclass(frozen=True)
class Job:
  """One item to synthesise: kind ("mix", "style", "single", "clone", "stems"), its index, input
  clips (mix: background, edited event, other events; clone: voice prompt, new utterance)."""
  kind: str
  index: int
  clips: tuple[Clip, ...] = ()

  @property
  def item_id(self) -> str:
    return f"{self.kind}-{self.index:07d}"


def build_dataset(clips: list[Clip], out_dir: str, config: BuildConfig,
                  soundfont: Clip | None = None, progress: bool = True) -> records.Manifest:
  """Builds a dataset directory from a clip table; bad clips are skipped and counted.

  `soundfont` (a General MIDI .sf2 with its licence) enables style-transfer pairs.
  """
  with _pool(config) as pool:
    usable, dropped = validate_clips(clips, config.checks, pool, progress)
  return write_dataset(plan_jobs(usable, config, soundfont), out_dir, config, dropped, progress)


def _pool(config: BuildConfig):
  return multiprocessing.get_context("spawn").Pool(config.workers)  # fork is unsafe under JAX


def write_dataset(jobs: list[Job], out_dir: str, config: BuildConfig,
                  dropped: checks_lib.DropCounter, progress: bool = True) -> records.Manifest:
  """Synthesises `jobs` into shards in parallel (one worker per shard) and writes the manifest;
  `out_dir` may be a URI (`gs://b/data`)."""
  epath.Path(out_dir).mkdir(parents=True, exist_ok=True)
  work = [(records.shard_name(i, config.num_shards), jobs[i::config.num_shards], config, out_dir)
          for i in range(config.num_shards)]
  with _pool(config) as pool:
    stats = list(tqdm.tqdm(pool.imap_unordered(_write_shard, work), total=len(work),
                           desc="shards", disable=not progress))
  totals = collections.defaultdict(collections.Counter)
  for shard_stats in stats:
    for key, counter in shard_stats.items():
      totals[key].update(counter)
  dropped = checks_lib.DropCounter(dropped)
  dropped.update(totals["dropped"])
  manifest = records.Manifest(
      shards=[w[0] for w in work], records=sum(totals["records"].values()),
      examples=sum(totals["per_task"].values()), per_task=dict(totals["per_task"]),
      per_label=dict(totals["per_label"]), target_seconds=float(sum(totals["seconds"].values())),
      licences=dict(totals["licences"]), dropped=dict(dropped),
      config={"seed": config.seed, "rate": config.synth.rate, "frames": config.synth.frames,
              "codec": config.codec, "build": _jsonable(config)})
  manifest.save(out_dir)
  _LOG.info("built %d records / %d examples in %s; dropped: %s", manifest.records,
            manifest.examples, out_dir, dropped.summary())
  return manifest


def _jsonable(config: BuildConfig) -> dict:
  as_dict = dataclasses.asdict(config)
  as_dict.pop("workers")  # does not change the output
  return as_dict


def validate_clips(clips: list[Clip], checks: checks_lib.ClipChecks, pool,
                   progress: bool = False) -> tuple[list[Clip], checks_lib.DropCounter]:
  """Reads every clip once in parallel; returns the usable ones and drop counts per reason."""
  problems = list(tqdm.tqdm(pool.imap(functools.partial(_clip_problem, checks=checks), clips,
                                      chunksize=8),
                            total=len(clips), desc="checking clips", disable=not progress))
  dropped = checks_lib.DropCounter(p for p in problems if p)
  return [c for c, p in zip(clips, problems) if not p], dropped


def _clip_problem(clip: Clip, checks: checks_lib.ClipChecks) -> str | None:
  problem = checks_lib.read_checked(clip.path, checks)[2]
  if problem is None and clip.video:
    from aomni_jax.video.decode import VideoReadError, probe  # pylint: disable=g-import-not-at-top
    try:
      probe(clip.video)
    except VideoReadError as error:
      return f"video_{error.reason}"
  return problem


def plan_jobs(clips: list[Clip], config: BuildConfig, soundfont: Clip | None) -> list[Job]:
  """Chooses every item from `config.seed` alone: events are cycled in shuffled order so
  labels spread evenly over mixtures; backgrounds are drawn at random."""
  rng = np.random.default_rng(config.seed)
  by_kind = collections.defaultdict(list)
  for clip in clips:
    by_kind[clip.kind].append(clip)
  jobs: list[Job] = []
  events, backgrounds = by_kind["event"], by_kind["background"]
  if events and backgrounds:
    order = np.concatenate([rng.permutation(len(events))
                            for _ in range(-(-config.mixtures // len(events)))])
    for event_index in order[:config.mixtures]:
      background = backgrounds[int(rng.integers(len(backgrounds)))]
      others = ()
      if config.max_events_per_mixture > 1:
        candidates = [i for i in range(len(events)) if i != event_index]
        count = min(int(rng.integers(0, config.max_events_per_mixture)), len(candidates))
        others = tuple(events[candidates[int(i)]]
                       for i in rng.choice(len(candidates), count, replace=False))
      jobs.append(Job("mix", len(jobs), (background, events[int(event_index)], *others)))
  elif config.mixtures:
    _LOG.warning("no %s clips: skipping mixtures", "event" if backgrounds else "background")
  if soundfont:
    jobs += [Job("style", len(jobs) + i, (soundfont,)) for i in range(config.style_pairs)]
  for kind in ("event", "music", "speech"):
    pool = by_kind[kind]
    for clip_index in rng.permutation(len(pool))[:config.max_singles_per_kind]:
      jobs.append(Job("single", len(jobs), (pool[int(clip_index)],)))
  # Every clip with a video gives a V2A (or, for music, V2M) example.
  jobs += [Job("video", len(jobs) + i, (clip,))
           for i, clip in enumerate(c for c in clips if c.video and c.kind != "speech")]
  jobs += _voice_clone_jobs(by_kind["speech"], config.voice_clone_pairs, len(jobs), rng)
  return jobs


def _voice_clone_jobs(speech: list[Clip], count: int, first_index: int,
                      rng: np.random.Generator) -> list[Job]:
  """`count` (prompt, utterance) pairs of distinct clips of one speaker, speakers taken in turn."""
  by_speaker = collections.defaultdict(list)
  for clip in speech:
    if clip.speaker:
      by_speaker[clip.speaker].append(clip)
  speakers = sorted(name for name, clips in by_speaker.items() if len(clips) >= 2)
  if count and not speakers:
    _LOG.warning("no speaker with two clips: skipping voice-cloning pairs")
    return []
  jobs = []
  for i in range(count if speakers else 0):
    clips = by_speaker[speakers[i % len(speakers)]]
    prompt, utterance = rng.choice(len(clips), 2, replace=False)
    jobs.append(Job("clone", first_index + i, (clips[int(prompt)], clips[int(utterance)])))
  return jobs


@functools.lru_cache(maxsize=32)
def _load_clip(path: str, rate: int) -> np.ndarray:
  audio, source_rate = audio_io.read_audio(path)
  return dsp.resample(audio, source_rate, rate)


def make_item(job: Job, config: BuildConfig) -> synth.Item:
  """Synthesises one item; its randomness depends only on (seed, job index)."""
  rng = np.random.default_rng([config.seed, job.index])
  cfg = config.synth
  if job.kind == "mix":
    background, event, *others = job.clips
    item = synth.mixture_item(job.item_id, _load_clip(background.path, cfg.rate),
                              _load_clip(event.path, cfg.rate), background.label, event.label,
                              rng, cfg, tuple((_load_clip(o.path, cfg.rate), o.label)
                                              for o in others))
  elif job.kind == "clone":
    prompt, utterance = job.clips
    item = synth.voice_clone_item(job.item_id, _load_clip(prompt.path, cfg.rate),
                                  _load_clip(utterance.path, cfg.rate), prompt.transcript,
                                  utterance.transcript, prompt.speaker, cfg)
  elif job.kind == "style":
    item = synth.style_item(job.item_id, job.clips[0].path, rng, cfg)
  elif job.kind == "stems":
    residual, target = job.clips
    item = synth.stems_item(job.item_id, _load_clip(residual.path, cfg.rate),
                            _load_clip(target.path, cfg.rate), target.label, rng, cfg)
  elif job.kind == "video":
    clip, = job.clips
    item = synth.video_item(job.item_id, _load_clip(clip.path, cfg.rate), clip.kind, clip.label,
                            clip.caption, clip.video, rng, cfg)
  else:
    clip, = job.clips
    item = synth.single_item(job.item_id, _load_clip(clip.path, cfg.rate), clip.kind, clip.label,
                             clip.caption, clip.transcript, rng, cfg)
  item.meta["sources"] = [{"path": c.path, "source": c.source, "licence": c.licence}
                          for c in job.clips]
  return item


def _write_shard(work) -> dict[str, collections.Counter]:
  """Worker: synthesises the jobs of one shard in order and writes them."""
  name, jobs, config, out_dir = work
  stats = collections.defaultdict(collections.Counter)
  with records.ShardWriter(storage.join(out_dir, name)) as writer:
    for job in jobs:
      try:
        item = make_item(job, config)
      except Exception as error:  # pylint: disable=broad-except  (one bad item never stops a build)
        _LOG.warning("skipping %s: %r", job.item_id, error)
        stats["dropped"][f"synthesis_error:{type(error).__name__}"] += 1
        continue
      writer.write(records.encode_record(item.item_id, item.stems, item.examples, item.meta,
                                         config.synth.rate, config.codec), len(item.examples))
      stats["records"][name] += 1
      stats["seconds"][name] += config.synth.clip_seconds * len(item.examples)
      for ex in item.examples:
        stats["per_task"][ex["task"]] += 1
        stats["per_label"][ex["label"]] += 1
      for source in item.meta["sources"]:
        stats["licences"][source["licence"]] += 1
  return stats
