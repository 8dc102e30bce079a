"""Runs the frozen parts once over a dataset and stores their outputs with the records, so the
training step runs only what is trained.

The job is generic: it takes named feature functions `fn(batch) -> {feature: np.ndarray [B, ...]}`
that see the loader's batch keys. Every output record keeps its examples and gains each feature
with one row per example. The builders for the project's frozen modules (`model_features`) run
the modules of one converted model directory through `aomni_jax.train.frozen`, the functions the
training loop uses on the fly, so precomputed and on-the-fly features are the same.

Multi-host: process i handles shards i, i+n, …; the last process to finish writes the manifest.
Resumable: a shard appears only when complete (`records.ShardWriter` stages it), and shards
already in place are skipped, so a killed job restarts where it stopped. Both directories may
be URIs (`gs://b/features`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable

import grain
import numpy as np
import tqdm
from etils import epath

from aomni_jax.data import loader
from aomni_jax.data import records

_LOG = logging.getLogger(__name__)

FeatureFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def precompute(data_dir: str, out_dir: str, features: dict[str, FeatureFn], *,
               batch_size: int = 8, drop_stems: bool = False,
               shapes: loader.Shapes = loader.Shapes(), process_index: int = 0,
               process_count: int = 1, progress: bool = True) -> records.Manifest | None:
  """Writes a copy of `data_dir` whose records carry the outputs of `features`; returns the
  manifest once all shards exist (None on a process that finished before the others)."""
  manifest = records.Manifest.load(data_dir)
  epath.Path(out_dir).mkdir(parents=True, exist_ok=True)
  decoder = loader.ExampleDecoder(shapes)
  in_paths, out_paths = manifest.shard_paths(data_dir), manifest.shard_paths(out_dir)
  for shard_index in range(process_index, len(manifest.shards), process_count):
    if _done(out_paths[shard_index]):
      _LOG.info("%s is already done; skipped", manifest.shards[shard_index])
      continue
    _precompute_shard(in_paths[shard_index], out_paths[shard_index], decoder, features,
                      batch_size, drop_stems, progress)
  if not all(_done(path) for path in out_paths):
    return None
  first = grain.sources.ArrayRecordDataSource(out_paths[:1])[0]
  result = dataclasses.replace(manifest, features=sorted(records.decode_record(first)["features"]))
  result.save(out_dir)
  return result


def _done(shard_path: str) -> bool:
  return epath.Path(records.counts_path(shard_path)).exists()


def _precompute_shard(in_path: str, out_path: str, decoder: loader.ExampleDecoder,
                      features: dict[str, FeatureFn], batch_size: int, drop_stems: bool,
                      progress: bool) -> None:
  source = loader.ExampleSource([in_path])
  raw = grain.sources.ArrayRecordDataSource([in_path])
  counts = records.read_counts(in_path)
  outputs: dict[str, list[np.ndarray]] = {}
  for start in tqdm.trange(0, len(source), batch_size, desc=epath.Path(out_path).name,
                           disable=not progress):
    indices = list(range(start, min(start + batch_size, len(source))))
    padded = indices + [indices[-1]] * (batch_size - len(indices))  # fixed shapes for jit
    examples = [decoder(source[i]) for i in padded]
    batch = {key: np.stack([ex[key] for ex in examples]) for key in examples[0]}
    for fn in features.values():
      for name, value in fn(batch).items():
        outputs.setdefault(name, []).append(np.asarray(value)[:len(indices)])
  stacked = {name: np.concatenate(parts) for name, parts in outputs.items()}
  offsets = np.concatenate([[0], np.cumsum(counts)])
  with records.ShardWriter(out_path) as writer:
    for record_index, count in enumerate(counts):
      rows = slice(offsets[record_index], offsets[record_index + 1])
      data = records.with_features(raw[record_index],
                                   {name: value[rows] for name, value in stacked.items()},
                                   drop_stems)
      writer.write(data, int(count))


# ---- feature builders for the project's frozen modules ---------------------------------------

def qwen_feature(stage) -> FeatureFn:
  """`qwen_hidden` / `qwen_mask` of each example's chat prompt (`aomni_jax.train.frozen`)."""
  from aomni_jax.data import templates  # pylint: disable=g-import-not-at-top

  def fn(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    hidden, mask = stage.qwen([templates.chat_prompt(templates.TASKS[int(task)], str(text))
                               for task, text in zip(batch["task_id"], batch["instruction"])])
    return {"qwen_hidden": hidden, "qwen_mask": mask}

  return fn


def vae_feature(stage) -> FeatureFn:
  """`latent_mean` / `latent_std`: the VAE posterior of `target_audio` (/ latent_scale)."""

  def fn(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    mean, std = stage.posterior(batch["target_audio"])
    return {"latent_mean": mean, "latent_std": std}

  return fn


def sync_feature(stage) -> FeatureFn:
  """`sync_features`: the Synchformer over each example's video, zeros where it has none."""
  return lambda batch: {"sync_features": stage.sync(batch["video"], batch["video_start"])}


def transcript_ids_feature(config) -> FeatureFn:
  """`transcript_ids` [B, seq_len] int32 from the transcript front end (0 rows when no text)."""
  from aomni_jax.models.transcript import tokenize  # pylint: disable=g-import-not-at-top
  seq_len = config.model.transcript.seq_len
  return lambda batch: {"transcript_ids": tokenize([str(t) or None for t in batch["transcript"]],
                                                   seq_len)[0]}


def log_mel_feature(config) -> FeatureFn:
  """`log_mel` [B, ...] of `mel_audio`, the mel encoder's input."""
  from aomni_jax.audio import mel  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  compute = jax.jit(lambda wave: mel.log_mel_spectrogram(wave, config.model.mel))
  return lambda batch: {"log_mel": np.asarray(compute(batch["mel_audio"]))}


FEATURES = ("qwen", "vae", "sync", "transcript_ids", "log_mel")


def model_features(config, stage, names: list[str]) -> dict[str, FeatureFn]:
  """The named feature groups (`FEATURES`) over the frozen modules of `stage`
  (a `train.frozen.FrozenFeatures`); unknown names raise ValueError."""
  unknown = sorted(set(names) - set(FEATURES))
  if unknown:
    raise ValueError(f"unknown features {unknown}; choose from {', '.join(FEATURES)}")
  builders = {"qwen": lambda: qwen_feature(stage), "vae": lambda: vae_feature(stage),
              "sync": lambda: sync_feature(stage),
              "transcript_ids": lambda: transcript_ids_feature(config),
              "log_mel": lambda: log_mel_feature(config)}
  return {name: builders[name]() for name in names}
