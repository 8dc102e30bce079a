"""The jitted autoencoder step: `(state, batch, key) -> (state, metrics)`, state donated.

Generator (the VAE): encode → posterior sample → decode, loss = spectral (sum-and-difference
multi-resolution STFT) + kl_weight·KL + l1_weight·L1 [+ adversarial_weight·hinge generator loss
+ feature_matching_weight·feature matching]. Discriminator (optional): hinge loss on the real
crops and the stopped-gradient reconstructions. Both players step in the same call, each with
its own gradient clipping (`optim.clip_each_module`); before `discriminator_start` the adversarial terms are
switched off, the discriminator's gradients zeroed and its update discarded. Latents are the raw posterior samples:
`latent_scale` belongs to the DiT side (see `export.latent_scale`). A non-finite loss or gradient
discards the whole update, as in the DiT step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from aomni_jax import parallel
from aomni_jax.config import Config
from aomni_jax.train import optim
from aomni_jax.train.losses import adversarial, stft
from aomni_jax.train.state import StateSpec, TrainState, make_state_spec
from aomni_jax.train.step import TrainStep, ema_decay

VAE, DISCRIMINATOR = "vae", "discriminator"
AUDIO = "audio"  # batch key: float32 [B, crop_samples, audio_channels]


def build_modules(config: Config, rngs: nnx.Rngs) -> dict[str, nnx.Module]:
  """The VAE, and the discriminator when `autoencoder.discriminator` is on."""
  from aomni_jax.models.discriminator import MultiScaleSTFTDiscriminator  # pylint: disable=g-import-not-at-top
  from aomni_jax.models.vae import OobleckVAE  # pylint: disable=g-import-not-at-top
  ae = config.autoencoder
  vae = OobleckVAE(config.model.vae, rngs=rngs, weight_norm=ae.weight_norm)
  bias = vae.encoder.conv_out.bias  # [mean | scale] channels
  bias.value = bias.value.at[config.model.vae.latent_dim:].set(ae.posterior_scale_bias)
  modules = {VAE: vae}
  if ae.discriminator:
    modules[DISCRIMINATOR] = MultiScaleSTFTDiscriminator(
        config.model.vae.audio_channels, ae.disc_filters, ae.disc_fft_sizes, rngs=rngs)
  return modules


def make_optimizer(config: Config, params: dict, axes: dict) -> optax.GradientTransformation:
  """AdamW is element-wise, so one instance over both players equals one each; only the
  gradient clipping has to be per player."""
  return optim.build_optimizer(config.train, optim.weight_decay_mask(params, axes),
                               clip=optim.clip_each_module(config.train.grad_clip_norm))


def make_spec(config: Config, mesh: Mesh) -> StateSpec:
  return make_state_spec(config, mesh, build_modules, make_optimizer)


def batch_shapes(config: Config, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  shape = (batch_size, config.autoencoder.crop_samples, config.model.vae.audio_channels)
  return {AUDIO: jax.ShapeDtypeStruct(shape, jnp.float32)}


def _where(keep: jax.Array, new: Any, old: Any) -> Any:
  return jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, old)


def make_step_fn(config: Config, spec: StateSpec):
  """The pure (un-jitted) step."""
  ae, rate = config.autoencoder, config.model.sample_rate
  schedule = optim.learning_rate_schedule(config.train)
  gan = ae.discriminator

  def merge(name, params, buffers):
    return nnx.merge(spec.graphdefs[name], params[name], buffers[name])

  def generator_loss(vae_params, params, buffers, audio, key, gan_on):
    vae = merge(VAE, {**params, VAE: vae_params}, buffers)
    posterior = vae.posterior(audio)
    latents = posterior.sample(jax.random.normal(key, posterior.mean.shape))
    decoded = vae.decoder(latents).astype(jnp.float32)
    terms = {"stft": stft.reconstruction_loss(decoded, audio, ae, rate),
             "kl": posterior.kl(), "l1": jnp.mean(jnp.abs(decoded - audio))}
    loss = terms["stft"] + ae.kl_weight * terms["kl"] + ae.l1_weight * terms["l1"]
    if gan:
      losses = adversarial.adversarial_losses(merge(DISCRIMINATOR, params, buffers), audio,
                                              decoded)
      terms |= {"adversarial": losses.generator, "feature_matching": losses.feature_matching}
      loss += gan_on * (ae.adversarial_weight * losses.generator
                        + ae.feature_matching_weight * losses.feature_matching)
    terms |= {"latent_std": jnp.std(latents), "posterior_std": jnp.mean(posterior.std)}
    return loss, (terms, decoded)

  def discriminator_loss(disc_params, params, buffers, audio, decoded):
    disc = merge(DISCRIMINATOR, {**params, DISCRIMINATOR: disc_params}, buffers)
    return adversarial.adversarial_losses(disc, audio, jax.lax.stop_gradient(decoded)).discriminator

  def step_fn(state: TrainState, batch: dict[str, jax.Array], key: jax.Array):
    step_key = jax.random.fold_in(key, state.step)
    gan_on = (state.step >= ae.discriminator_start).astype(jnp.float32)
    audio = batch[AUDIO]
    (loss, (terms, decoded)), vae_grads = jax.value_and_grad(generator_loss, has_aux=True)(
        state.params[VAE], state.params, state.buffers, audio, step_key, gan_on)
    grads = {VAE: vae_grads}
    if gan:
      terms["discriminator"], disc_grads = jax.value_and_grad(discriminator_loss)(
          state.params[DISCRIMINATOR], state.params, state.buffers, audio, decoded)
      grads[DISCRIMINATOR] = jax.tree.map(lambda g: gan_on * g, disc_grads)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = spec.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if gan:  # the discriminator sits out until discriminator_start
      params[DISCRIMINATOR] = _where(gan_on > 0, params[DISCRIMINATOR],
                                     state.params[DISCRIMINATOR])
    decay = ema_decay(config.train.ema_decay, state.step)
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, params)
    new_state = state.replace(step=state.step + 1, params=_where(finite, params, state.params),
                              opt_state=_where(finite, opt_state, state.opt_state),
                              ema_params=_where(finite, ema, state.ema_params))
    metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": schedule(state.step),
               "nonfinite": (~finite).astype(jnp.int32), "step": state.step, **terms,
               **{f"grad_norm_{name}": optax.tree.norm(g) for name, g in grads.items()}}
    return new_state, metrics

  return step_fn


def build_step(config: Config, mesh: Mesh, spec: StateSpec | None = None) -> TrainStep:
  """The jitted step with explicit shardings (batch over data × fsdp)."""
  spec = spec or make_spec(config, mesh)
  shapes = batch_shapes(config, config.train.batch_size)
  batch_shardings = parallel.batch_shardings(shapes, mesh, config.mesh.rules)
  replicated = NamedSharding(mesh, PartitionSpec())
  fn = jax.jit(make_step_fn(config, spec),
               in_shardings=(spec.shardings, batch_shardings, replicated),
               out_shardings=(spec.shardings, replicated), donate_argnums=(0,))
  return TrainStep(fn=fn, config=config, spec=spec, batch_shardings=batch_shardings,
                   key_sharding=replicated)
