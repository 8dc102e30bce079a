"""Hinge GAN losses and feature matching for a multi-scale discriminator (stable-audio-tools'
`EncodecDiscriminator.loss`): per scale, discriminator relu(1 − D(real)) + relu(1 + D(fake)),
generator −D(fake), feature matching the mean |f_real − f_fake| averaged over the scale's layers;
every term is averaged over the scales."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Scales = list[tuple[jax.Array, list[jax.Array]]]  # (logits, feature maps) per scale


class AdversarialLosses(NamedTuple):
  discriminator: jax.Array
  generator: jax.Array
  feature_matching: jax.Array


def adversarial_losses(discriminator: Callable[[jax.Array], Scales], reals: jax.Array,
                       fakes: jax.Array) -> AdversarialLosses:
  """The three losses for one batch; callers stop gradients where each player must not learn."""
  real_scales, fake_scales = discriminator(reals), discriminator(fakes)
  dis = gen = fm = 0.0
  for (real_logits, real_maps), (fake_logits, fake_maps) in zip(real_scales, fake_scales,
                                                                strict=True):
    dis = dis + jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
    gen = gen - jnp.mean(fake_logits)
    fm = fm + sum(jnp.mean(jnp.abs(r - f)) for r, f in zip(real_maps, fake_maps)) / len(real_maps)
  count = len(real_scales)
  return AdversarialLosses(dis / count, gen / count, fm / count)
