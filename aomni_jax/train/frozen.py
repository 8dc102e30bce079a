"""The frozen feature extractors shared by precompute and training: Qwen, Synchformer, VAE.

Both the offline job (`aomni-data precompute --model DIR`) and the training loop's on-the-fly path
call these same functions on the modules of one converted model directory, so a feature means
the same thing whichever way it was made:

  qwen_hidden [B, pad_length, F] float32, qwen_mask [B, pad_length] bool
      hidden_states[omni.layer_idx] of the thinker over the example's chat prompt, packed to
      `omni.pad_length` exactly as the omni conditioner does (real tokens first, resampled when
      longer, zeros after). Generation and editing send Qwen the text only (official_spec §2.3).
  sync_features [B, sync.seq_len, sync.input_dim] float32
      the Synchformer over the example's video (`data.video_features`), zeros without one.
  latent_mean, latent_std [B, latent_length, latent_dim] float32
      the VAE posterior of the target audio divided by `vae.latent_scale`; the train step draws
      latents = mean + std · ε itself, so every epoch sees a new posterior sample.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from aomni_jax import parallel
from aomni_jax.audio import dsp
from aomni_jax.config import Config
from aomni_jax.models.conditioners import pack_qwen_features

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FrozenModules:
  """The frozen modules of one converted model directory (the thinker is None when absent)."""

  vae: nnx.Module
  thinker: nnx.Module | None = None
  tokenizer: Any = None
  synchformer: nnx.Module | None = None
  description: str = ""  # what they are, e.g. "random tiny thinker (not Qwen2.5-Omni)"


def with_model_dir_latent_scale(config: Config, model_dir: str) -> Config:
  """`config` with the VAE latent scale of the model directory: the scale belongs to the frozen
  VAE (a trained VAE is exported with the std of its posterior samples), not to the run."""
  from aomni_jax.inference import model_dir as md  # pylint: disable=g-import-not-at-top
  scale = md.read_config(model_dir).model.vae.latent_scale
  if scale == config.model.vae.latent_scale:
    return config
  _log.info("vae.latent_scale=%s from %s (the config had %s)", scale, model_dir,
            config.model.vae.latent_scale)
  vae = dataclasses.replace(config.model.vae, latent_scale=scale)
  return dataclasses.replace(config, model=dataclasses.replace(config.model, vae=vae))


def load_frozen(model_dir: str, config: Config, mesh: Mesh | None = None) -> FrozenModules:
  """The VAE and (if present) the Qwen thinker + tokenizer of a converted model directory.

  Weights are restored straight into their shardings on `mesh` (logical rules of the config);
  shapes are checked strictly against `config.model`, so a directory made for another model size
  fails with one ConversionError that lists every mismatch.
  """
  from aomni_jax.inference import engine, model_dir as md  # pylint: disable=g-import-not-at-top
  from aomni_jax.inference import thinker as thinker_lib  # pylint: disable=g-import-not-at-top
  from aomni_jax.models.qwen_omni.config import ThinkerConfig  # pylint: disable=g-import-not-at-top
  from aomni_jax.models.qwen_omni.thinker import Thinker  # pylint: disable=g-import-not-at-top
  from aomni_jax.models.vae import OobleckVAE  # pylint: disable=g-import-not-at-top

  def load(name, factory):
    shardings = None
    if mesh is not None:
      abstract = nnx.state(nnx.eval_shape(factory))
      shardings = parallel.state_shardings(abstract, mesh, config.mesh.rules)
    return md.load_component(model_dir, name, factory, shardings=shardings)

  vae = load("vae", lambda: OobleckVAE(config.model.vae, rngs=nnx.Rngs(0)))
  synchformer = None
  if md.has_component(model_dir, "synchformer"):
    from aomni_jax.models.synchformer import Synchformer  # pylint: disable=g-import-not-at-top
    synchformer = md.load_component(
        model_dir, "synchformer", lambda: Synchformer(config.model.synchformer, rngs=nnx.Rngs(0)))
  source = md.read_manifest(model_dir).get("source", "")
  if not md.has_component(model_dir, "qwen"):
    return FrozenModules(vae=vae, description=source, synchformer=synchformer)
  # The stored architecture with this run's numerics (`model.qwen`), as generation runs it.
  thinker_cfg = engine.thinker_config(md.component_config(model_dir, "qwen", ThinkerConfig),
                                      config)
  thinker = load("qwen", lambda: Thinker(thinker_cfg, rngs=nnx.Rngs(0)))
  processor = md.processor_path(model_dir)
  if processor is None:
    raise ValueError(f"{model_dir} has a Qwen thinker but no processor/ folder with its "
                     "tokenizer; convert it again with the Qwen2.5-Omni-3B folder")
  tokenizer = thinker_lib.load_tokenizer(processor)
  return FrozenModules(vae=vae, thinker=thinker, tokenizer=tokenizer, description=source,
                       synchformer=synchformer)


class QwenFeatures:
  """Chat prompts → (qwen_hidden, qwen_mask), tokenised and bucketed as generation does
  (`inference.thinker`), one jitted thinker call per bucket."""

  def __init__(self, thinker: nnx.Module, tokenizer: Any, config: Config):
    omni = config.model.omni
    if thinker.cfg.text.hidden_size != omni.feature_dim:
      raise ValueError(f"the thinker's hidden size {thinker.cfg.text.hidden_size} is not "
                       f"omni.feature_dim={omni.feature_dim}")
    self.tokenizer = tokenizer
    self.cfg = thinker.cfg
    self.pad_length = omni.pad_length
    graphdef, self._state = nnx.split(thinker)

    def run(state, inputs):
      hidden = nnx.merge(graphdef, state).features(inputs, omni.layer_idx)
      return pack_qwen_features(hidden.astype(jnp.float32), inputs.attention_mask,
                                omni.pad_length)

    self._run = jax.jit(run)

  def __call__(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    from aomni_jax.inference import thinker as thinker_lib  # pylint: disable=g-import-not-at-top
    ids = thinker_lib.token_ids(self.tokenizer, prompts)
    length = thinker_lib.bucket_length(max(map(len, ids)), self.pad_length)
    hidden, mask = self._run(self._state, thinker_lib.pad_prompts(ids, length, self.cfg))
    return np.asarray(hidden), np.asarray(mask)


class VAEPosterior:
  """Target audio [B, channels, samples] → (latent_mean, latent_std), both / latent_scale."""

  def __init__(self, vae: nnx.Module, config: Config, shardings: tuple[Any, Any] | None = None):
    """`shardings`: (audio, latents) batch shardings for the on-device route, else None."""
    self.sample_size = config.model.sample_size
    graphdef, self._state = nnx.split(vae)

    def run(state, audio):
      module = nnx.merge(graphdef, state)
      posterior = module.posterior(audio)
      scale = module.cfg.latent_scale
      return posterior.mean / scale, posterior.std / scale

    self._audio_sharding = shardings[0] if shardings else None
    self._run = jax.jit(run, out_shardings=(shardings[1],) * 2 if shardings else None)

  def device(self, audio: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """As `__call__`, but the outputs stay on the devices (batch-sharded when a sharding is set)."""
    fitted = dsp.fit_length(np.asarray(audio, np.float32), self.sample_size)
    channels_last = np.swapaxes(fitted, 1, 2)
    if self._audio_sharding is not None:
      channels_last = jax.make_array_from_process_local_data(self._audio_sharding, channels_last)
    return self._run(self._state, channels_last)

  def __call__(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = self.device(audio)
    return np.asarray(mean), np.asarray(std)


class FrozenFeatures:
  """Both extractors over one model directory's modules: what precompute and the loop call."""

  def __init__(self, modules: FrozenModules, config: Config,
               shardings: tuple[Any, Any] | None = None):
    self.modules = modules
    self._posterior = VAEPosterior(modules.vae, config, shardings)
    self._qwen = (QwenFeatures(modules.thinker, modules.tokenizer, config)
                  if modules.thinker is not None else None)
    from aomni_jax.data.video_features import SyncFeatures  # pylint: disable=g-import-not-at-top
    self._sync = SyncFeatures(modules.synchformer, config)

  def qwen(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Chat prompts → (qwen_hidden, qwen_mask)."""
    if self._qwen is None:
      raise ValueError("the model directory has no Qwen thinker (component 'qwen'), so the "
                       "qwen_hidden features cannot be computed; add it with aomni-convert")
    return self._qwen(prompts)

  def sync(self, videos: Sequence[str], starts: Sequence[float]) -> np.ndarray:
    """Video paths ("" = none) and start seconds → sync_features, zeros where no video."""
    return self._sync(videos, starts)

  def posterior(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target audio [B, channels, samples] → (latent_mean, latent_std) on the host."""
    return self._posterior(audio)

  def posterior_on_device(self, audio: np.ndarray) -> tuple[jax.Array, jax.Array]:
    return self._posterior.device(audio)


def sample_latents(mean: jax.Array, std: jax.Array, key: jax.Array) -> jax.Array:
  """One posterior draw per element: the VAE's stochastic encode, done inside the train step."""
  return mean + std * jax.random.normal(key, mean.shape, jnp.float32)
