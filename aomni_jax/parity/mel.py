"""`mel` fixtures: torchaudio-identical log-mel and the mel encoder head."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from aomni_jax.audio.mel import log_mel_spectrogram, mel_filterbank, stft_magnitude
from aomni_jax.config import MelConfig
from aomni_jax.conversion.common import build_loaded
from aomni_jax.conversion.official import convert_head
from aomni_jax.models.conditioners import MelHead
from aomni_jax.parity import CaseResult, compare, load_fixture, weights_path

LOG_MEL_ATOL = 5e-4  # golden README: raw log-mel (log amplifies f32 error in near-silent bins)
ATOL = 1e-4  # golden README: mel conditioner outputs (and the filterbank / |STFT| checks)


def config_from_manifest(manifest: dict) -> MelConfig:
  c = manifest["config_used"]
  return MelConfig(sample_rate=int(c["target_sample_rate"]), n_fft=int(c["n_fft"]),
                   win_length=int(c["win_length"]), hop_length=int(c["hop_length"]),
                   n_mels=int(c["n_mel_channels"]), seq_len=int(c["seq_len"]),
                   out_dim=int(c.get("output_dim", 768)),
                   mask_ratio_start=float(c.get("mask_ratio_start", 0.7)),
                   mask_ratio_end=float(c.get("mask_ratio_end", 1.0)))


def load_head(fixture_dir: pathlib.Path, cfg: MelConfig, manifest: dict) -> MelHead:
  make = lambda: MelHead(cfg, rngs=nnx.Rngs(0))  # noqa: E731
  state = load_file(weights_path(fixture_dir, manifest))
  return build_loaded(make, convert_head("mel", state, nnx.eval_shape(make)))


def int16_to_float(x: np.ndarray) -> jax.Array:
  return jnp.asarray(x.astype(np.float32) / 32768.0)


def _torch_layout(x: jax.Array) -> np.ndarray:
  """[B, T, C] → [B, C, T]."""
  return np.swapaxes(np.asarray(x), 1, 2)


def run(fixture_dir: pathlib.Path) -> list[CaseResult]:
  fixture_dir = pathlib.Path(fixture_dir)
  manifest, arrays = load_fixture(fixture_dir)
  cfg = config_from_manifest(manifest)
  results = [compare("mel_filterbank", mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels),
                     arrays["mel_filterbank"], atol=ATOL)]
  with jax.default_matmul_precision("highest"):
    stereo = int16_to_float(arrays["stereo_short_waveform_int16"])
    magnitude = stft_magnitude(stereo.mean(axis=1), cfg.n_fft, cfg.hop_length, cfg.win_length)
    results.append(compare("stereo_short_stft_magnitude_of_channel_mean", _torch_layout(magnitude),
                           arrays["stereo_short_stft_magnitude_of_channel_mean"], atol=ATOL,
                           rtol=ATOL))
    results.append(compare("stereo_short_logmel", _torch_layout(log_mel_spectrogram(stereo, cfg)),
                           arrays["stereo_short_logmel"], atol=LOG_MEL_ATOL))
    log_mel = log_mel_spectrogram(int16_to_float(arrays["mono_waveform_int16"])[None], cfg)
    results.append(compare("mono_logmel", _torch_layout(log_mel), arrays["mono_logmel"],
                           atol=LOG_MEL_ATOL))
    head = load_head(fixture_dir, cfg, manifest)
    time_projected = jnp.swapaxes(head.seq_proj(jnp.swapaxes(log_mel, 1, 2)), 1, 2)
    results.append(compare("after_proj_sequence_features", time_projected,
                           arrays["after_proj_sequence_features"], atol=ATOL, rtol=ATOL))
    results.append(compare("after_proj_features", head.proj(time_projected),
                           arrays["after_proj_features"], atol=ATOL, rtol=ATOL))
    results.append(compare("cond_out_no_mask", head(log_mel), arrays["cond_out_no_mask"],
                           atol=ATOL, rtol=ATOL))
    if "masked_demo_output" in arrays:
      start, length = (int(v) for v in arrays["masked_demo_start_len"])
      frames = jnp.arange(log_mel.shape[1])[None, :, None]
      masked = jnp.where((frames >= start) & (frames < start + length), 0.0,
                         jnp.asarray(arrays["mono_logmel"]).swapaxes(1, 2))
      results.append(compare("masked_demo_output (saved span)", head(masked),
                             arrays["masked_demo_output"], atol=ATOL, rtol=ATOL))
  return results
