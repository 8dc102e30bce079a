"""The trained VAE as the `vae` component of a converted model directory, with its latent scale.

The DiT learns on latents / `latent_scale` (`OobleckVAE.encode`): the scale is set to the standard
deviation of posterior samples (mean + std·noise, pooled over batch, frames and channels) of
training crops, so the DiT's targets have about unit variance, as the rectified-flow noise does.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.config import Config
from aomni_jax.models.vae import fold_weight_norm
from aomni_jax.train.autoencoder.step import AUDIO, VAE
from aomni_jax.train.state import StateSpec


def vae_module(spec: StateSpec, params: dict, buffers: dict) -> nnx.Module:
  """The VAE with `params[VAE]` (host copies), weight norm folded: plain kernels, as inference
  and a converted official VAE hold them."""
  vae = nnx.merge(spec.graphdefs[VAE], *jax.device_get((params[VAE], buffers[VAE])))
  return fold_weight_norm(vae)


def latent_scale(vae: nnx.Module, batches: Iterator[dict[str, np.ndarray]], num_batches: int,
                 seed: int = 0) -> float:
  """Std of posterior samples over `num_batches` batches, to 3 significant digits."""

  @jax.jit
  def sample(audio, key):
    posterior = vae.posterior(audio)
    return posterior.sample(jax.random.normal(key, posterior.mean.shape))

  key = jax.random.PRNGKey(seed)
  latents = [np.asarray(sample(jnp.asarray(next(batches)[AUDIO]), jax.random.fold_in(key, i)))
             for i in range(num_batches)]
  return float(f"{np.std(np.concatenate([x.ravel() for x in latents])):.3g}")


def with_latent_scale(config: Config, scale: float) -> Config:
  vae = dataclasses.replace(config.model.vae, latent_scale=scale)
  return dataclasses.replace(config, model=dataclasses.replace(config.model, vae=vae))


def export_model_dir(directory: str, config: Config, vae: nnx.Module, source: str) -> None:
  """Writes DIR/config.json (with the latent scale) and the `vae` component."""
  from aomni_jax.inference import model_dir  # pylint: disable=g-import-not-at-top
  model_dir.save_model_dir(directory, config, {VAE: nnx.state(vae, nnx.Param)}, source=source)
