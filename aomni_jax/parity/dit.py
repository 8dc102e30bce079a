"""`dit` fixtures: one DiT forward per case, as the sampler calls the official model."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from aomni_jax.config import DiTConfig
from aomni_jax.conversion.dit import load_dit
from aomni_jax.models.dit import DiffusionTransformer, DiTConditioning
from aomni_jax.parity import CaseResult, compare, read_manifest, weights_path
from aomni_jax.sampling import velocity_fn

ATOL = RTOL = 1e-4  # golden README: fp32 DiT


def dit_config_from_manifest(manifest: dict) -> DiTConfig:
  """Our DiTConfig from the official `dit_config` block (unknown official keys are ignored)."""
  fields = DiTConfig.__dataclass_fields__
  return DiTConfig(**{k: v for k, v in manifest["dit_config"].items() if k in fields})


def load_fixture_dit(fixture_dir: pathlib.Path, manifest: dict) -> DiffusionTransformer:
  return load_dit(load_file(str(weights_path(fixture_dir, manifest))),
                  dit_config_from_manifest(manifest))


def to_ours(a: np.ndarray) -> jax.Array:
  """PyTorch [B, C, T] → our channels-last [B, T, C]."""
  return jnp.asarray(a).transpose(0, 2, 1)


def to_torch(a: jax.Array) -> np.ndarray:
  return np.asarray(a).transpose(0, 2, 1)


# case -> (uses cross-attention context, uses global cond, cfg scale)
_CASES = {"out_a": (True, True, 1.0), "out_b": (True, True, None), "out_c": (True, False, 1.0),
          "out_d": (True, False, None), "out_e": (False, True, 1.0), "out_f": (False, True, None)}


def _cfg_scale(manifest: dict) -> float:
  """The guidance scale of the cfg cases, read from the manifest's description of case b."""
  text = manifest.get("call", {}).get("cases", {}).get("out_b", "")
  for token in text.replace(",", " ").replace(";", " ").split():
    if token.startswith("cfg_scale="):
      return float(token.split("=")[1])
  return 3.0


def run(fixture_dir: pathlib.Path) -> list[CaseResult]:
  manifest = read_manifest(fixture_dir)
  arrays = np.load(pathlib.Path(fixture_dir) / "cases.npz")
  results = []
  with jax.default_matmul_precision("highest"):
    dit = load_fixture_dit(fixture_dir, manifest)
    x, t = to_ours(arrays["x"]), jnp.asarray(arrays["t"])
    cross = jnp.asarray(arrays["cross_attn_cond"])
    mask = jnp.asarray(arrays["cross_attn_mask"]).astype(bool)
    glob = jnp.asarray(arrays["global_cond"])
    scale = _cfg_scale(manifest)
    for name, (use_cross, use_global, case_scale) in _CASES.items():
      if name not in arrays:
        continue
      cond = DiTConditioning(cross if use_cross else None, mask if use_cross else None,
                             glob if use_global else None)
      s = scale if case_scale is None else case_scale
      guided = use_cross and s != 1.0
      for cached in ((False, True) if guided else (False,)):
        v = nnx.jit(lambda m, c=cond, g=guided, k=cached, s=s: velocity_fn(
            m, c, guided=g, cached_context=k)(x, t, s, 0.0))(dit)
        label = f"{name} (cfg {s:g}{', cached context' if cached else ''})"
        results.append(compare(label, to_torch(v), arrays[name], atol=ATOL, rtol=RTOL))
    if "out_b_batched_cond_uncond" in arrays:
      doubled = dit(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                    jnp.concatenate([cross, jnp.zeros_like(cross)]),
                    jnp.concatenate([mask, mask]), jnp.concatenate([glob, glob]))
      results.append(compare("out_b_batched_cond_uncond", to_torch(doubled),
                             arrays["out_b_batched_cond_uncond"], atol=ATOL, rtol=RTOL))
    results += _intermediates(dit, arrays, x, t, cross, glob)
  return results


def _intermediates(dit: DiffusionTransformer, arrays, x, t, cross, glob) -> list[CaseResult]:
  """Stage-by-stage checks of case a, to locate the first diverging stage when one fails."""
  from aomni_jax.layers.embeddings import fourier_features
  out = []
  checks = {
      "a_intermediate_timestep_fourier_features":
          lambda: fourier_features(t, dit.timestep_features[...]),
      "a_intermediate_timestep_embed":
          lambda: dit.to_timestep(fourier_features(t, dit.timestep_features[...])),
      "a_intermediate_cond_embed": lambda: dit.to_cond(cross),
      "a_intermediate_global_embed_projected": lambda: dit.to_global(glob),
      "a_intermediate_preprocess_conv_out": lambda: to_torch(dit.preprocess(x)),
      "a_intermediate_project_in_out": lambda: dit.project_in(x + dit.preprocess(x)),
  }
  for name, fn in checks.items():
    if name in arrays:
      out.append(compare(name, fn(), arrays[name], atol=ATOL, rtol=RTOL))
  return out
