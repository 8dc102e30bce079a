"""The frozen stage in front of the train step: loader batches → the step's numeric batch.

The loader yields audio and text (`aomni_jax.data.loader`); the step needs VAE latents and the
conditioner heads' inputs (`ConditionerInputs`). This stage fills them from precomputed features
when the batch carries them (`vae_latents`, `qwen_hidden`/`qwen_mask`, `sync_features`) and
otherwise computes them: VAE latents with the frozen encoder (jitted, batch-sharded), transcript
ids with the text front end, zero sync features (no video), and — when no Qwen thinker features
exist — `hashed_text_features`, a fixed random byte-level text embedding that stands in for the
Qwen features so that small runs (the CPU demo) are still conditioned on the instruction text.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from aomni_jax import parallel
from aomni_jax.config import Config
from aomni_jax.data import templates
from aomni_jax.layers.embeddings import sinusoidal_table

_log = logging.getLogger(__name__)
_TEXT_SEED = 20251122  # fixed: the stand-in text embedding must be the same in every run


def step_batch_shapes(config: Config, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes of the arrays the train step consumes (the contract between this stage and the step)."""
  m = config.model
  shapes = {
      "latents": ((m.latent_length, m.dit.io_channels), jnp.float32),
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


@functools.cache
def _text_tables(length: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
  table = np.random.default_rng(_TEXT_SEED).standard_normal((256, dim)).astype(np.float32)
  return table, np.asarray(sinusoidal_table(dim, length), np.float32)


def hashed_text_features(texts: list[str], length: int, dim: int) -> tuple[np.ndarray,
                                                                          np.ndarray]:
  """UTF-8 bytes → fixed random embeddings + sinusoidal positions: ([B, length, dim], mask).

  A deterministic, untrained stand-in for Qwen hidden states (same text → same features). The
  *last* `length` bytes are kept: chat prompts end with the user turn, after a fixed system turn.
  """
  table, position_table = _text_tables(length, dim)
  features = np.zeros((len(texts), length, dim), np.float32)
  mask = np.zeros((len(texts), length), bool)
  for i, text in enumerate(texts):
    data = np.frombuffer(text.encode("utf-8")[-length:], np.uint8)
    features[i, :len(data)] = table[data] + position_table[:len(data)]
    mask[i, :len(data)] = True
  return features, mask


def transcript_inputs(texts: list[str], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids, has_transcript) for the transcript encoder; "" = no transcript."""
  from aomni_jax.models.transcript import tokenize  # pylint: disable=g-import-not-at-top
  return tokenize([t if t else None for t in texts], seq_len)


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
  """Crops or zero-pads the last axis to `length` samples."""
  audio = audio[..., :length]
  pad = length - audio.shape[-1]
  return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, pad)]) if pad > 0 else audio


@dataclasses.dataclass
class FrozenStage:
  """Holds the frozen VAE and turns loader batches into step batches (host + one jitted encode)."""

  config: Config
  mesh: Mesh
  vae_graphdef: Any
  vae_state: Any
  batch_size: int

  @classmethod
  def create(cls, config: Config, mesh: Mesh, batch_size: int, vae_state: Any = None
             ) -> "FrozenStage":
    """`vae_state`: converted VAE weights; None = random weights from seed 0, the same as
    `aomni-data precompute` uses, so precomputed and on-the-fly latents agree (demo runs)."""
    from aomni_jax.models.vae import OobleckVAE  # pylint: disable=g-import-not-at-top
    abstract = nnx.eval_shape(lambda: OobleckVAE(config.model.vae, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    shardings = parallel.state_shardings(abstract_state, mesh, config.mesh.rules)
    if vae_state is None:
      def init():
        return nnx.to_pure_dict(nnx.state(OobleckVAE(config.model.vae, rngs=nnx.Rngs(0))))

      vae_state = jax.jit(init, out_shardings=shardings)()
    return cls(config=config, mesh=mesh, vae_graphdef=graphdef, vae_state=vae_state,
               batch_size=batch_size)

  def __post_init__(self):
    shapes = step_batch_shapes(self.config, self.batch_size)
    self._dtypes = {k: v.dtype for k, v in shapes.items()}
    self.shardings = parallel.batch_shardings(shapes, self.mesh, self.config.mesh.rules)
    audio_sharding = parallel.batch_sharding(self.mesh, self.config.mesh.rules, 3,
                                             self.batch_size)
    graphdef = self.vae_graphdef

    def encode(state, audio, key):
      return nnx.merge(graphdef, state).encode(audio, key)

    self._audio_sharding = audio_sharding
    self._warned_hashed = False
    self._encode = jax.jit(encode, out_shardings=self.shardings["latents"])

  def vae(self):
    return nnx.merge(self.vae_graphdef, self.vae_state)

  def __call__(self, batch: dict[str, np.ndarray], key: jax.Array) -> dict[str, jax.Array]:
    """One loader batch → the global step batch (sharded); `key` draws the VAE posterior noise."""
    m = self.config.model
    out: dict[str, np.ndarray] = {}
    if "vae_latents" not in batch:
      target = fit_length(np.asarray(batch["target_audio"], np.float32), m.sample_size)
      audio = jax.make_array_from_process_local_data(self._audio_sharding,
                                                     np.swapaxes(target, 1, 2))
      latents = self._encode(self.vae_state, audio, key)
    else:
      latents = jax.make_array_from_process_local_data(self.shardings["latents"],
                                                       np.asarray(batch["vae_latents"]))
    if "qwen_hidden" in batch:
      out["qwen_hidden"], out["qwen_mask"] = batch["qwen_hidden"], batch["qwen_mask"]
    else:
      if not self._warned_hashed:
        self._warned_hashed = True
        _log.warning("batches carry no Qwen features (qwen_hidden); conditioning on the hashed "
                     "stand-in text features (fine for the CPU demo, not for a real model)")
      texts = [templates.chat_prompt(templates.TASKS[int(task)], str(instruction))
               for task, instruction in zip(batch["task_id"], batch["instruction"])]
      out["qwen_hidden"], out["qwen_mask"] = hashed_text_features(texts, m.omni.pad_length,
                                                                  m.omni.feature_dim)
    out["transcript_ids"], out["has_transcript"] = transcript_inputs(
        [str(t) for t in batch["transcript"]], m.transcript.seq_len)
    if "transcript_ids" in batch:
      out["transcript_ids"] = np.where(out["has_transcript"][:, None], batch["transcript_ids"],
                                       out["transcript_ids"])
    size = len(batch["task_id"])
    out["sync_features"] = batch.get("sync_features",
                                     np.zeros((size, m.sync.seq_len, m.sync.input_dim), np.float32))
    if self.config.data.precomputed:
      out["log_mel"] = batch["log_mel"]
    else:
      out["waveform"] = fit_length(np.asarray(batch["mel_audio"], np.float32), m.mel.num_samples)
    out["is_tts"] = np.asarray(batch["task_id"]) == templates.task_id("tts")
    arrays = parallel.shard_batch({k: np.asarray(v, self._dtypes[k]) for k, v in out.items()},
                                  {k: self.shardings[k] for k in out})
    arrays["latents"] = latents
    return arrays
