"""`vae` fixtures: the Oobleck pretransform (encoder, bottleneck, decoder) against official runs.

Arrays are compared in the fixture's PyTorch layout ([B, C, T]); every array of `cases.npz` that
has an official computation behind it is checked, the ones absent from a fixture are skipped.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from aomni_jax.config import VAEConfig, from_official_json
from aomni_jax.conversion.vae import load_vae
from aomni_jax.models.vae import OobleckVAE, posterior
from aomni_jax.parity import CaseResult, compare, read_manifest, weights_path

ATOL = RTOL = 1e-4  # golden README: fp32 VAE (observed f32 vs f64 differences are ≤ 3.1e-6)


def vae_config_from_manifest(manifest: dict) -> VAEConfig:
  """Our float32 VAEConfig from the manifest's official `pretransform_config` block."""
  pretransform = manifest["pretransform_config"]
  inner = pretransform.get("config", {})
  enc = inner.get("encoder", {}).get("config", {})
  dec = inner.get("decoder", {}).get("config", {})
  if inner.get("bottleneck", {}).get("type", "vae") != "vae":
    raise ValueError(f"pretransform bottleneck {inner['bottleneck']['type']!r}: only 'vae' exists")
  for name in ("channels", "c_mults", "strides"):
    if name in dec and dec[name] != enc.get(name):
      raise ValueError(f"pretransform decoder {name}={dec[name]} differs from the encoder's "
                       f"{enc.get(name)}; our VAE is symmetric")
  cfg = from_official_json({"model": {"pretransform": pretransform}}).model.vae
  if "latent_dim" in enc and enc["latent_dim"] != 2 * cfg.latent_dim:
    raise ValueError(f"pretransform encoder latent_dim={enc['latent_dim']} must be twice the "
                     f"decoder's {cfg.latent_dim} (the 'vae' bottleneck splits mean and scale)")
  return dataclasses.replace(cfg, latent_scale=float(pretransform.get("scale", 1.0)),
                             dtype="float32", param_dtype="float32")


def _ours(a: np.ndarray) -> jax.Array:
  return jnp.swapaxes(jnp.asarray(a), 1, 2)  # PyTorch [B, C, T] → channels-last


def _torch(a: jax.Array) -> jax.Array:
  return jnp.swapaxes(a, 1, 2)  # channels-last → PyTorch [B, C, T]


def _stage_outputs(stages, x: jax.Array, name: str) -> dict[str, jax.Array]:
  """`intermediate_<name>_layer{i}_out` for every official slot, from one pass."""
  out = {}
  for i, stage in enumerate(stages):
    x = stage(x)
    out[f"intermediate_{name}_layer{i}_out"] = x
  return out


def _outputs(vae: OobleckVAE, arrays: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Our value of every fixture array that has an official computation, in the fixture layout."""
  out: dict[str, jax.Array] = {}
  if "waveform" in arrays:
    audio = _ours(arrays["waveform"])
    out.update(_stage_outputs(vae.encoder.layers(), audio, "encoder"))
    pre = vae.encoder(audio)
    post = posterior(pre)
    out.update(pre_bottleneck=pre, mean=post.mean, scale_raw=jnp.split(pre, 2, axis=-1)[1],
               std=post.std)
    if "pretransform_encode_noise" in arrays:
      out["pretransform_encode_sample"] = vae.encode_with_noise(
          audio, _ours(arrays["pretransform_encode_noise"]))
  for name, latents in (("decoded_from_mean", "mean"),
                        ("pretransform_decode_of_mean", "mean"),
                        ("pretransform_decode_of_sample", "pretransform_encode_sample")):
    if latents in arrays:
      out[name] = vae.decode(_ours(arrays[latents]))
  if "mean" in arrays:
    stages = vae.decoder.layers()
    out.update(_stage_outputs(stages, _ours(arrays["mean"]), "decoder"))
    # The official decoder ends with an Identity slot (final_tanh false).
    out[f"intermediate_decoder_layer{len(stages)}_out"] = out[
        f"intermediate_decoder_layer{len(stages) - 1}_out"]
  if "ragged_waveform" in arrays:
    ragged = _ours(arrays["ragged_waveform"])
    out["ragged_pre_bottleneck"] = vae.encoder(ragged)
    out["ragged_decoded_from_mean"] = vae.decode(vae.encode_mean(ragged))
  result = {name: _torch(value) for name, value in out.items()}
  if "waveform" in arrays:
    result["kl"] = jnp.reshape(post.kl(), (1,))
  return result


_jitted_outputs = nnx.jit(_outputs)


def run(fixture_dir: pathlib.Path) -> list[CaseResult]:
  manifest = read_manifest(fixture_dir)
  arrays = dict(np.load(pathlib.Path(fixture_dir) / "cases.npz"))
  cfg = vae_config_from_manifest(manifest)
  prefix = manifest.get("weights", {}).get("key_prefix", "pretransform.") + "model."
  results = []
  with jax.default_matmul_precision("highest"):
    vae = load_vae(load_file(str(weights_path(fixture_dir, manifest))), cfg, prefix)
    for name, ours in _jitted_outputs(vae, arrays).items():
      if name in arrays:
        results.append(compare(name, ours, arrays[name], atol=ATOL, rtol=RTOL))
  return results
