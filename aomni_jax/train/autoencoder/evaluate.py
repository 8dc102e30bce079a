"""Held-out reconstructions: SI-SDR and multi-resolution mel distance, wav + spectrogram PNGs.

The clips are the loudest windows of held-out signals (`data.crops.evaluation_clips`), encoded
to the posterior mean and decoded, so the numbers measure the autoencoder, not the sampling
noise. The metrics are `evaluation.fidelity`'s (channel mean per clip, then the clip mean); a
clip the metrics refuse (a fresh VAE decodes to near silence) is reported unscored, with why.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx

from aomni_jax.evaluation import fidelity
from aomni_jax.train import samples
from aomni_jax.train.autoencoder.step import VAE
from aomni_jax.train.state import StateSpec

_FILES = 4  # clips written as wav + PNG at each evaluation (all are scored)


def reconstruct(spec: StateSpec, params: dict, buffers: dict, clips: np.ndarray) -> np.ndarray:
  """[N, T, C] → the VAE's deterministic reconstructions (posterior mean), one clip at a time."""

  @jax.jit
  def one(vae_params, vae_buffers, clip):
    vae = nnx.merge(spec.graphdefs[VAE], vae_params, vae_buffers)
    return vae.decoder(vae.posterior(clip[None]).mean)[0].astype(jnp.float32)

  vae_params, vae_buffers = jax.device_get((params[VAE], buffers[VAE]))
  return np.stack([np.asarray(one(vae_params, vae_buffers, clip)) for clip in clips])


def _score(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> dict[str, Any]:
  try:
    return {"si_sdr_db": fidelity.si_sdr(ref.T, est.T),
            "mel_distance": fidelity.mel_distance(ref.T, est.T, sample_rate)}
  except fidelity.MetricInputError as error:  # e.g. a fresh VAE's near-silent output
    return {"si_sdr_db": None, "mel_distance": None, "unscored": str(error)}


def scores(clips: np.ndarray, recons: np.ndarray, sample_rate: int) -> dict[str, Any]:
  """Per-clip SI-SDR (dB) and mel distance of channels-last clip pairs, and their means over
  the clips that could be scored (None when none could; each clip says why not)."""
  per_clip = [_score(ref, est, sample_rate) for ref, est in zip(clips, recons)]
  mean = lambda key: (float(np.mean(values)) if (values := [c[key] for c in per_clip
                                                           if c[key] is not None]) else None)
  return {"si_sdr_db": mean("si_sdr_db"), "mel_distance": mean("mel_distance"),
          "scored_clips": sum(c["si_sdr_db"] is not None for c in per_clip), "clips": per_clip}


def evaluate(spec: StateSpec, params: dict, buffers: dict, clips: np.ndarray, names: list[str],
             sample_rate: int, out_dir: epath.Path | None) -> dict[str, Any]:
  """Scores the reconstructions; with `out_dir`, writes metrics.json and the first clips'
  input / reconstruction as wav + PNG (peak-normalised for listening)."""
  recons = reconstruct(spec, params, buffers, clips)
  result = scores(clips, recons, sample_rate)
  for entry, name in zip(result["clips"], names):
    entry["clip"] = name
  if out_dir is not None and jax.process_index() == 0:
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, (clip, recon, name) in enumerate(zip(clips[:_FILES], recons[:_FILES], names)):
      samples.write_sample(out_dir / f"{i:02d}_input", clip, sample_rate, f"input {name}")
      samples.write_sample(out_dir / f"{i:02d}_reconstruction", recon, sample_rate,
                           f"reconstruction {name}")
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
  return result
