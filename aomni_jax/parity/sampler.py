"""`sampler` fixtures: the whole Euler/CFG loop from the saved noise, per step and final."""

from __future__ import annotations

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.models.dit import DiTConditioning
from aomni_jax.parity import CaseResult, compare, read_manifest
from aomni_jax.parity.dit import load_fixture_dit, to_ours, to_torch
from aomni_jax.sampling import sample, velocity_fn


ATOL = 5e-4  # golden README: "atol = 5e-4 for the sampler outputs" (fp32)


def _jitted_velocity(graphdef, cond: DiTConditioning, guided: bool, cached: bool):
  """One compiled CFG velocity evaluation, reused for every step of the trajectory."""

  @jax.jit
  def velocity(state, x, t, scale):
    dit = nnx.merge(graphdef, state)
    return velocity_fn(dit, cond, guided=guided, cached_context=cached)(x, t, scale, 0.0)

  return velocity


def run(fixture_dir: pathlib.Path) -> list[CaseResult]:
  manifest = read_manifest(fixture_dir)
  arrays = np.load(pathlib.Path(fixture_dir) / "cases.npz")
  scale = float(manifest.get("cfg_scale", 1.0))
  results = []
  with jax.default_matmul_precision("highest"):
    dit = load_fixture_dit(fixture_dir, manifest)
    graphdef, state = nnx.split(dit)
    cond = DiTConditioning(jnp.asarray(arrays["cross_attn_cond"]),
                           jnp.asarray(arrays["cross_attn_mask"]).astype(bool),
                           jnp.asarray(arrays["global_cond"]))
    runs = sorted(int(m.group(1)) for k in arrays.files
                  if (m := re.fullmatch(r"steps(\d+)_noise", k)))
    for steps in runs:
      p = f"steps{steps}_"
      if p + "t_schedule" in arrays:
        ts = np.linspace(1.0, 0.0, steps + 1, dtype=np.float32)
        results.append(compare(p + "t_schedule", ts, arrays[p + "t_schedule"], atol=1e-7))
      guided = scale != 1.0
      for cached in (False, True):
        tag = " (cached context)" if cached else ""
        final = sample(graphdef, state, to_ours(arrays[p + "noise"]), cond, steps=steps,
                       cfg_scale=scale, cached_context=cached)
        ref = arrays[p + "final"]
        results.append(compare(p + "final" + tag, to_torch(final), ref, atol=ATOL))
        if p + "model_out_each_step" in arrays:
          velocity = _jitted_velocity(graphdef, cond, guided, cached)
          xs, tk = arrays[p + "x_before_each_step"], arrays[p + "t_each_step"]
          ours = np.stack([to_torch(velocity(state, to_ours(xs[k]), jnp.asarray(tk[k]), scale))
                           for k in range(steps)])
          ref = arrays[p + "model_out_each_step"]
          results.append(compare(p + "model_out_each_step" + tag, ours, ref,
                                 atol=ATOL))
  return results
