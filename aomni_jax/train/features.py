"""The frozen stage in front of the train step: loader batches → the step's numeric batch.

The loader yields audio and text (`aomni_jax.data.loader`); the step needs the VAE posterior of the
target and the conditioner heads' inputs (`ConditionerInputs`). Precomputed features
(`aomni-data precompute --model DIR`: `latent_mean`/`latent_std`, `qwen_hidden`/`qwen_mask`,
`transcript_ids`, `log_mel`, `sync_features`) are used as they are; what a batch lacks is computed
here by the same functions (`aomni_jax.train.frozen`) over the same converted model's frozen
modules, so both routes train on identical features. Sync features are the Synchformer's over
the example's video (V2A / V2M) and zeros for every other example.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from aomni_jax import parallel
from aomni_jax.audio import dsp
from aomni_jax.config import Config, ConfigError
from aomni_jax.data import templates
from aomni_jax.train import frozen


def step_batch_shapes(config: Config, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes of the arrays the train step consumes (the contract between this stage and the step)."""
  m = config.model
  shapes = {
      "latent_mean": ((m.latent_length, m.dit.io_channels), jnp.float32),
      "latent_std": ((m.latent_length, m.dit.io_channels), jnp.float32),
      "qwen_hidden": ((m.omni.pad_length, m.omni.feature_dim), jnp.float32),
      "qwen_mask": ((m.omni.pad_length,), jnp.bool_),
      "transcript_ids": ((m.transcript.seq_len,), jnp.int32),
      "has_transcript": ((), jnp.bool_),
      "sync_features": ((m.sync.seq_len, m.sync.input_dim), jnp.float32),
      "is_tts": ((), jnp.bool_),
  }
  if config.data.precomputed:  # stems may be gone: the mel input comes precomputed
    shapes["log_mel"] = ((m.mel.num_frames, m.mel.n_mels), jnp.float32)
  else:
    shapes["waveform"] = ((m.mel.num_samples,), jnp.float32)
  return {k: jax.ShapeDtypeStruct((batch_size,) + s, d) for k, (s, d) in shapes.items()}


def stand_in_step_batch(config: Config, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """Random arrays of the train step's shapes: a stand-in for the real frozen features (Qwen, the
  VAE posterior `latent_mean`/`latent_std`, Synchformer) that exercises shapes, sharding and
  gradients, never learning (tests, examples, benchmarks)."""
  rng = np.random.default_rng(seed)
  batch = {}
  for name, shape in step_batch_shapes(config, batch_size).items():
    if shape.dtype == np.bool_:
      batch[name] = rng.random(shape.shape) < 0.5
    elif shape.dtype == np.int32:
      batch[name] = rng.integers(1, 100, shape.shape).astype(np.int32)
    else:
      batch[name] = rng.standard_normal(shape.shape).astype(np.float32)
  batch["latent_std"] = 0.1 * np.abs(batch["latent_std"])  # a posterior std is positive
  batch["qwen_mask"][:, :4] = True  # every item has some Qwen tokens
  return batch


def transcript_inputs(texts: list[str], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids, has_transcript) for the transcript encoder; "" = no transcript."""
  from aomni_jax.models.transcript import tokenize  # pylint: disable=g-import-not-at-top
  return tokenize([t if t else None for t in texts], seq_len)


@dataclasses.dataclass
class FrozenStage:
  """Turns loader batches into global step batches with the frozen modules of one model dir."""

  config: Config
  mesh: Mesh
  modules: frozen.FrozenModules
  batch_size: int

  def __post_init__(self):
    shapes = step_batch_shapes(self.config, self.batch_size)
    self._dtypes = {k: v.dtype for k, v in shapes.items()}
    self.shardings = parallel.batch_shardings(shapes, self.mesh, self.config.mesh.rules)
    audio_sharding = parallel.batch_sharding(self.mesh, self.config.mesh.rules, 3,
                                             self.batch_size)
    self.features = frozen.FrozenFeatures(self.modules, self.config,
                                          (audio_sharding, self.shardings["latent_mean"]))

  def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """One loader batch → the global step batch (sharded)."""
    m = self.config.model
    out: dict[str, np.ndarray] = {}
    if "qwen_hidden" in batch:
      out["qwen_hidden"], out["qwen_mask"] = batch["qwen_hidden"], batch["qwen_mask"]
    else:
      if jax.process_count() > 1:
        raise ConfigError("multi-process runs train on precomputed Qwen features: run `aomni-"
                          "data precompute --model` and set data.root to its output")
      out["qwen_hidden"], out["qwen_mask"] = self.features.qwen(
          [templates.chat_prompt(templates.TASKS[int(task)], str(instruction))
           for task, instruction in zip(batch["task_id"], batch["instruction"])])
    if "latent_mean" in batch:
      out["latent_mean"], out["latent_std"] = batch["latent_mean"], batch["latent_std"]
    out["transcript_ids"], out["has_transcript"] = transcript_inputs(
        [str(t) for t in batch["transcript"]], m.transcript.seq_len)
    if "transcript_ids" in batch:
      out["transcript_ids"] = np.where(out["has_transcript"][:, None], batch["transcript_ids"],
                                       out["transcript_ids"])
    if "sync_features" in batch:
      out["sync_features"] = batch["sync_features"]
    else:
      size = len(batch["task_id"])
      out["sync_features"] = self.features.sync(batch.get("video", [""] * size),
                                                batch.get("video_start", [0.0] * size))
    if self.config.data.precomputed:
      out["log_mel"] = batch["log_mel"]
    else:
      out["waveform"] = dsp.fit_length(np.asarray(batch["mel_audio"], np.float32),
                                       m.mel.num_samples)
    out["is_tts"] = np.asarray(batch["task_id"]) == templates.task_id("tts")
    arrays = parallel.shard_batch({k: np.asarray(v, self._dtypes[k]) for k, v in out.items()},
                                  {k: self.shardings[k] for k in out})
    if "latent_mean" not in arrays:
      arrays["latent_mean"], arrays["latent_std"] = self.features.posterior_on_device(
          batch["target_audio"])
    return arrays
