"""Runs the frozen parts once over a dataset and stores their outputs with the records, so the
training step runs only what is trained.

The job is generic: it takes named feature functions `fn(batch) -> np.ndarray [B, ...]` that see
the loader's batch keys plus `noise_key` (uint32 [B, 2], a raw `jax.random` key per example).
Every output record keeps its examples and gains `features[name]` with one row per example,
always including `vae_noise_key`, so a latent can be re-drawn exactly. Builders for the project's
own frozen modules (`vae_latents_feature`, `transcript_ids_feature`, `log_mel_feature`) import
them lazily; `available_features` skips what does not exist yet, with a logged note.

Multi-host: process i handles shards i, i+n, …; the last process to finish writes the manifest.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable

import grain
import numpy as np
import tqdm

from aomni_jax.audio import dsp
from aomni_jax.data import loader
from aomni_jax.data import records

_LOG = logging.getLogger(__name__)

FeatureFn = Callable[[dict[str, np.ndarray]], np.ndarray]
NOISE_KEY = "vae_noise_key"


def noise_keys(seed: int, example_indices: np.ndarray) -> np.ndarray:
  """Per-example raw PRNG keys (uint32 [B, 2]) from (seed, example index) only."""
  return np.stack([np.random.SeedSequence([seed, int(i)]).generate_state(2, np.uint32)
                   for i in example_indices])


def precompute(data_dir: str, out_dir: str, features: dict[str, FeatureFn], *,
               batch_size: int = 8, seed: int = 0, drop_stems: bool = False,
               shapes: loader.Shapes = loader.Shapes(), process_index: int = 0,
               process_count: int = 1, progress: bool = True) -> records.Manifest | None:
  """Writes a copy of `data_dir` whose records carry `features`; returns the manifest once all
  shards exist (None on a process that finished before the others)."""
  manifest = records.Manifest.load(data_dir)
  os.makedirs(out_dir, exist_ok=True)
  decoder = loader.ExampleDecoder(shapes)
  sizes = [int(np.load(records.counts_path(p)).sum()) for p in manifest.shard_paths(data_dir)]
  first_index = np.concatenate([[0], np.cumsum(sizes)])  # matches the loader's example_index
  for shard_index in range(process_index, len(manifest.shards), process_count):
    shard = manifest.shards[shard_index]
    _precompute_shard(os.path.join(data_dir, shard), os.path.join(out_dir, shard), decoder,
                      features, batch_size, seed, int(first_index[shard_index]), drop_stems,
                      progress)
  if not all(os.path.exists(records.counts_path(os.path.join(out_dir, s)))
             for s in manifest.shards):
    return None
  result = dataclasses.replace(manifest, features=sorted({NOISE_KEY, *features}))
  result.save(out_dir)
  return result


def _precompute_shard(in_path: str, out_path: str, decoder: loader.ExampleDecoder,
                      features: dict[str, FeatureFn], batch_size: int, seed: int,
                      first_index: int, drop_stems: bool, progress: bool) -> None:
  source = loader.ExampleSource([in_path])
  raw = grain.sources.ArrayRecordDataSource([in_path])
  counts = np.load(records.counts_path(in_path))
  outputs: dict[str, list[np.ndarray]] = {name: [] for name in (NOISE_KEY, *features)}
  for start in tqdm.trange(0, len(source), batch_size, desc=os.path.basename(in_path),
                           disable=not progress):
    indices = list(range(start, min(start + batch_size, len(source))))
    padded = indices + [indices[-1]] * (batch_size - len(indices))  # fixed shapes for jit
    examples = [decoder(source[i]) for i in padded]
    batch = {key: np.stack([ex[key] for ex in examples]) for key in examples[0]}
    batch["noise_key"] = noise_keys(seed, np.asarray(padded) + first_index)
    outputs[NOISE_KEY].append(batch["noise_key"][:len(indices)])
    for name, fn in features.items():
      outputs[name].append(np.asarray(fn(batch))[:len(indices)])
  stacked = {name: np.concatenate(parts) for name, parts in outputs.items() if parts}
  offsets = np.concatenate([[0], np.cumsum(counts)])
  with records.ShardWriter(out_path) as writer:
    for record_index, count in enumerate(counts):
      rows = slice(offsets[record_index], offsets[record_index + 1])
      data = records.with_features(raw[record_index],
                                   {name: value[rows] for name, value in stacked.items()},
                                   drop_stems)
      writer.write(data, int(count))


# ---- feature builders for the project's frozen modules ---------------------------------------

def vae_latents_feature(config, vae=None) -> FeatureFn:
  """`vae_latents` [B, latent_length, latent_dim]: stochastic encode of `target_audio`, with the
  posterior noise drawn from each example's own `noise_key` (so it is reproducible per example).
  `vae` defaults to random weights (demo runs); pass the converted official VAE for real work."""
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from aomni_jax.models import vae as vae_lib  # pylint: disable=g-import-not-at-top
  model = vae if vae is not None else vae_lib.OobleckVAE(config.model.vae, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  sample_size = config.model.sample_size

  @jax.jit
  def encode(state, audio, keys):
    module = nnx.merge(graphdef, state)
    posterior = module.posterior(audio)
    shape = posterior.mean.shape[1:]
    noise = jax.vmap(lambda k: jax.random.normal(jax.random.wrap_key_data(k), shape))(keys)
    return posterior.sample(noise) / module.cfg.latent_scale

  def fn(batch: dict[str, np.ndarray]) -> np.ndarray:
    audio = np.swapaxes(dsp.fit_length(batch["target_audio"], sample_size), 1, 2)  # [B, T, C]
    return np.asarray(encode(state, audio, batch["noise_key"]))

  return fn


def transcript_ids_feature(config) -> FeatureFn:
  """`transcript_ids` [B, seq_len] int32 from the transcript front end (0 rows when no text)."""
  from aomni_jax.models.transcript import tokenize  # pylint: disable=g-import-not-at-top
  seq_len = config.model.transcript.seq_len
  return lambda batch: tokenize([str(t) or None for t in batch["transcript"]], seq_len)[0]


def log_mel_feature(config) -> FeatureFn:
  """`log_mel` [B, ...] of `mel_audio`, the mel encoder's input."""
  from aomni_jax.audio import mel  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  compute = jax.jit(lambda wave: mel.log_mel_spectrogram(wave, config.model.mel))
  return lambda batch: np.asarray(compute(batch["mel_audio"]))


FEATURE_BUILDERS = {"vae_latents": vae_latents_feature, "transcript_ids": transcript_ids_feature,
                    "log_mel": log_mel_feature}


def available_features(config, names: list[str]) -> dict[str, FeatureFn]:
  """Builds the named features whose modules exist; logs a note for each one skipped."""
  features = {}
  for name in names:
    if name == "qwen_hidden":
      _LOG.warning("skipping qwen_hidden: the Qwen thinker features need converted thinker "
                   "weights, which this job does not load yet")
      continue
    try:
      features[name] = FEATURE_BUILDERS[name](config)
    except ImportError as error:
      _LOG.warning("skipping %s: %s", name, error)
  return features
