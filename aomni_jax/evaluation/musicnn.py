"""musicnn (MTT_musicnn: 50 MagnaTagATune tags, 200-d penultimate embedding) ported to JAX.

The `musicnn` wheel ships the TF1 checkpoint but needs TensorFlow 1-style layers, which cannot
share an environment with our JAX. `convert()` reads the checkpoint once without TensorFlow
(`tf_checkpoint.py`) into an .npz (cached under ~/.cache/aomni_jax/musicnn), and `forward` is the
network (Pons & Serra 2019) as one jitted pure function, so it runs batched on an accelerator.

Front end as in musicnn's extractor: 16 kHz, librosa-style Slaney mel power spectrogram
(512-point FFT, hop 256, 96 bands, centred zero padding), rounded to float16, then
log10(10000·x + 1); non-overlapping 3 s patches (187 frames). Clips shorter than one patch are
repeated to fill it, as musicnn's training did ("repeat-pad").
"""

from __future__ import annotations

import functools
import importlib.util
import os

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from aomni_jax.evaluation import tf_checkpoint
from aomni_jax.evaluation import backbone
from aomni_jax.evaluation.backbone import BackboneMissingError
from aomni_jax.evaluation.backbone import ClipOutput

SAMPLE_RATE, FFT, HOP, MELS = 16000, 512, 256, 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, as the extractor computes it
MTT_TAGS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice", "weird",
    "country", "metal", "female voice", "choral")
CACHE = os.path.expanduser("~/.cache/aomni_jax/musicnn/MTT_musicnn.npz")
INSTALL_HINT = "pip install --no-deps musicnn==0.1.0 (it carries the MTT_musicnn checkpoint)"
_BN_EPSILON = 1e-3  # tf.layers.batch_normalization's default
DEFAULT_BATCH = 32  # patches per jitted call (one compiled shape); larger suits accelerators


def convert(out_path: str | epath.Path = CACHE) -> epath.Path:
  """Reads MTT_musicnn from the musicnn wheel (no TensorFlow) and saves its weights as .npz."""
  spec = importlib.util.find_spec("musicnn")
  if spec is None or not spec.submodule_search_locations:
    raise BackboneMissingError(f"the musicnn backbone needs the `musicnn` wheel: {INSTALL_HINT}")
  prefix = os.path.join(spec.submodule_search_locations[0], "MTT_musicnn", "")
  weights = {name: value for name, value in tf_checkpoint.read_checkpoint(prefix).items()
             if "Adam" not in name and "power" not in name}
  return backbone.save_weights(out_path, weights)


def load_params(path: str | epath.Path = CACHE) -> dict[str, jax.Array]:
  """The converted weights, converting the wheel's checkpoint on first use."""
  path = epath.Path(path)
  if not path.exists():
    convert(path)
  with path.open("rb") as handle:
    return {name: jnp.asarray(value) for name, value in np.load(handle).items()}


@functools.cache
def slaney_mel_filters() -> np.ndarray:
  """[257, 96] Slaney-scale, Slaney-normalised mel filters (librosa.filters.mel's defaults)."""
  def hz_to_mel(hz):
    hz = np.asarray(hz, np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27)
    return np.where(hz >= 1000.0, log_part, linear)

  def mel_to_hz(mel):
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27) * (mel - 15.0)),
                    mel * (200.0 / 3))

  bins = np.linspace(0.0, SAMPLE_RATE / 2, FFT // 2 + 1)
  edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), MELS + 2))
  widths = np.diff(edges)
  ramps = edges[:, None] - bins[None, :]
  lower = -ramps[:-2] / widths[:-1, None]
  upper = ramps[2:] / widths[1:, None]
  filters = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
  return filters.T


def log_mel_patches(waveform: np.ndarray) -> np.ndarray:
  """[P, 187, 96] float32 patches of a mono 16 kHz waveform."""
  waveform = np.asarray(waveform, np.float64)
  min_samples = (PATCH_FRAMES - 1) * HOP + 1
  if len(waveform) < min_samples:
    waveform = np.resize(waveform, min_samples)  # repeat-pad
  padded = np.pad(waveform, FFT // 2)  # librosa ≥ 0.10 centres with zeros, as musicnn runs now
  frames = np.lib.stride_tricks.sliding_window_view(padded, FFT)[::HOP]
  window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(FFT) / FFT)
  power = np.abs(np.fft.rfft(frames * window, axis=-1))**2
  mel = (power @ slaney_mel_filters()).astype(np.float16).astype(np.float32)
  log_mel = np.log10(10000.0 * mel + 1.0)
  count = len(log_mel) // PATCH_FRAMES
  return log_mel[:count * PATCH_FRAMES].reshape(count, PATCH_FRAMES, MELS)


def _batch_norm(x: jax.Array, params: dict, name: str) -> jax.Array:
  scale = params[f"{name}/gamma"] * jax.lax.rsqrt(params[f"{name}/moving_variance"] + _BN_EPSILON)
  return (x - params[f"{name}/moving_mean"]) * scale + params[f"{name}/beta"]


def _conv(x: jax.Array, params: dict, name: str, padding) -> jax.Array:
  """NHWC convolution with a TF (H, W, in, out) kernel, then bias and ReLU (as in the layers)."""
  out = jax.lax.conv_general_dilated(x, params[f"{name}/kernel"], (1, 1), padding,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=jax.lax.Precision.HIGHEST)
  return jax.nn.relu(out + params[f"{name}/bias"])


def _frequency_pooled(x: jax.Array, params: dict, conv: str, norm: str, padding) -> jax.Array:
  """conv → ReLU → batch norm → max over all frequencies: [B, T, 96, 1] → [B, T, filters]."""
  return jnp.max(_batch_norm(_conv(x, params, conv, padding), params, norm), axis=2)


@jax.jit
def forward(params: dict, patches: jax.Array) -> tuple[jax.Array, jax.Array]:
  """[B, 187, 96] log-mel patches → (penultimate embedding [B, 200], tag logits [B, 50])."""
  x = _batch_norm(patches[..., None], params, "batch_normalization")
  time_padded = jnp.pad(x, ((0, 0), (3, 3), (0, 0), (0, 0)))
  frontend = [  # timbral (7×38, 7×67 over frequency) and temporal (128, 64, 32 frames) filters
      _frequency_pooled(time_padded, params, "conv2d", "batch_normalization_1", "VALID"),
      _frequency_pooled(time_padded, params, "conv2d_1", "batch_normalization_2", "VALID"),
      _frequency_pooled(x, params, "conv2d_2", "batch_normalization_3", "SAME"),
      _frequency_pooled(x, params, "conv2d_3", "batch_normalization_4", "SAME"),
      _frequency_pooled(x, params, "conv2d_4", "batch_normalization_5", "SAME"),
  ]
  features = [jnp.concatenate(frontend, axis=-1)]  # [B, T, 561]
  for layer in range(3):  # mid-end: 7-frame convolutions over all channels, residual after the 1st
    inputs = jnp.pad(features[-1], ((0, 0), (3, 3), (0, 0)))[:, :, :, None]
    out = _conv(inputs, params, f"conv2d_{5 + layer}", "VALID")[:, :, 0, :]
    out = _batch_norm(out, params, f"batch_normalization_{6 + layer}")
    features.append(out if layer == 0 else out + features[-1])
  feature_map = jnp.concatenate(features, axis=-1)  # [B, T, 753]
  # Back-end: max and mean over time, interleaved per feature as TF's flatten of [B, 753, 2].
  pooled = jnp.stack([feature_map.max(axis=1), feature_map.mean(axis=1)], axis=-1)
  pooled = _batch_norm(pooled.reshape(len(pooled), -1), params, "batch_normalization_9")
  hidden = jax.nn.relu(pooled @ params["dense/kernel"] + params["dense/bias"])
  penultimate = _batch_norm(hidden, params, "batch_normalization_10")
  logits = penultimate @ params["dense_1/kernel"] + params["dense_1/bias"]
  return penultimate, logits


class Musicnn:
  """MTT_musicnn on mono 16 kHz clips: 200-d embeddings and 50 tag logits per 3 s patch."""
  name = "musicnn MTT (JAX port of musicnn 0.1.0)"

  def __init__(self, weights: str | epath.Path = CACHE, batch: int = DEFAULT_BATCH):
    self._params = load_params(weights)
    self._batch = batch

  def class_names(self) -> tuple[str, ...]:
    return MTT_TAGS

  def run_patches(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[P, 187, 96] → (embeddings [P, 200], logits [P, 50]), in fixed-size jitted batches."""
    return backbone.run_in_batches(lambda batch: forward(self._params, batch), patches,
                                   self._batch)

  def __call__(self, waveforms: list[np.ndarray]) -> list[ClipOutput]:
    return backbone.run_clips(waveforms, log_mel_patches, self.run_patches)
