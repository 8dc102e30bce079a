"""Multi-scale STFT discriminator (Encodec's MS-STFT, as stable-audio-tools' `encodec` type).

Used only to train the VAE (`autoencoder.discriminator`). Each scale looks at the complex STFT of
the audio (window-normalised, not centred), real and imaginary parts of every channel stacked as
input channels, laid out channels-last as [B, frames, bins, 2·C]: a (3, 9) conv, three (3, 9)
convs striding 2 over frequency with time dilations 1, 2, 4, a (3, 3) conv, each followed by
LeakyReLU(0.2), and a (3, 3) conv to one logit map. Differences from the original: plain kernels
instead of weight-normalised ones (the reparametrisation changes the optimiser's geometry, not
what the network can represent).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.audio import mel
from aomni_jax.layers.linear import make_param

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
_DILATIONS = (1, 2, 4)
_KERNEL = (3, 9)
_SLOPE = 0.2
_INIT = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=-2, out_axis=-1)


class Conv2d(nnx.Module):
  """'Same'-padded 2-D conv over [B, H, W, C] with stride and dilation, kernel [kh, kw, in, out]."""

  def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int], *,
               rngs: nnx.Rngs, stride: tuple[int, int] = (1, 1),
               dilation: tuple[int, int] = (1, 1)):
    self.stride, self.dilation = stride, dilation
    self.padding = [((k - 1) * d // 2,) * 2 for k, d in zip(kernel, dilation)]
    self.kernel = make_param(rngs, _INIT, (*kernel, in_channels, out_channels),
                             (None, None, "conv_in", "conv_out"), jnp.float32)
    self.bias = make_param(rngs, jax.nn.initializers.zeros, (out_channels,), ("conv_out",),
                           jnp.float32)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jax.lax.conv_general_dilated(x, self.kernel[...], self.stride, self.padding,
                                     rhs_dilation=self.dilation, dimension_numbers=_DIMENSIONS)
    return y + self.bias[...]


def complex_spectrogram(audio: jax.Array, n_fft: int) -> jax.Array:
  """[B, T, C] → [B, frames, n_fft // 2 + 1, 2C]: window-normalised STFT, hop n_fft / 4,
  real parts of the channels first, then imaginary parts (torchaudio `normalized=True`)."""
  batch, _, channels = audio.shape
  mono = jnp.moveaxis(audio, -1, 1).reshape(batch * channels, -1)
  spec = mel.stft(mono, n_fft, n_fft // 4, n_fft, center=False)
  spec = spec / math.sqrt(float(np.sum(np.square(mel.hann_window(n_fft, n_fft)))))
  spec = spec.reshape(batch, channels, *spec.shape[1:])
  return jnp.moveaxis(jnp.concatenate([spec.real, spec.imag], axis=1), 1, -1)


class STFTDiscriminator(nnx.Module):
  """One scale: returns (logits [B, frames, bins', 1], feature maps after each activation)."""

  def __init__(self, audio_channels: int, filters: int, n_fft: int, *, rngs: nnx.Rngs):
    self.n_fft = n_fft
    square = (_KERNEL[0], _KERNEL[0])
    convs = [Conv2d(2 * audio_channels, filters, _KERNEL, rngs=rngs)]
    convs += [Conv2d(filters, filters, _KERNEL, stride=(1, 2), dilation=(d, 1), rngs=rngs)
              for d in _DILATIONS]
    convs += [Conv2d(filters, filters, square, rngs=rngs)]
    self.convs = nnx.List(convs)
    self.conv_post = Conv2d(filters, 1, square, rngs=rngs)

  def __call__(self, audio: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
    x = complex_spectrogram(audio, self.n_fft)
    features = []
    for conv in self.convs:
      x = jax.nn.leaky_relu(conv(x), _SLOPE)
      features.append(x)
    return self.conv_post(x), features


class MultiScaleSTFTDiscriminator(nnx.Module):
  """One `STFTDiscriminator` per FFT size; returns a (logits, features) pair per scale."""

  def __init__(self, audio_channels: int, filters: int, fft_sizes: tuple[int, ...], *,
               rngs: nnx.Rngs):
    self.scales = nnx.List([STFTDiscriminator(audio_channels, filters, n, rngs=rngs)
                            for n in fft_sizes])

  def __call__(self, audio: jax.Array) -> list[tuple[jax.Array, list[jax.Array]]]:
    return [scale(audio) for scale in self.scales]
