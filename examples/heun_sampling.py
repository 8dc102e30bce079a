"""Sample with Heun at 25 steps and see how far it is from a 200-step Euler reference.

The solver and the time grid are arguments of the one compiled sampler loop (and config keys:
`--set sampling.solver=heun sampling.grid=shifted` for aomni-sample / aomni-generate):

  python -m examples.heun_sampling
"""

from __future__ import annotations

import argparse

import numpy as np
from flax import nnx

from aomni_jax import solvers
from aomni_jax.models import registry
from aomni_jax.sampling import sample
from examples import common


def rmse(a, b) -> float:
  return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=25)
  parser.add_argument("--reference-steps", type=int, default=200)
  parser.add_argument("--grid", default="linear", choices=solvers.GRIDS)
  args = parser.parse_args(argv)
  config = common.tiny_config()
  # Random weights: a stand-in model, enough to compare solvers on the same vector field.
  graphdef, state = nnx.split(common.stand_in_weights(registry.build_dit(config.model,
                                                                         nnx.Rngs(0))))
  cond = common.stand_in_conditioning(config, registry.build_heads(config.model, nnx.Rngs(1)), 2)
  noise = common.stand_in_noise(config, 2)
  run = lambda solver, steps, grid=solvers.TimeGrid(): sample(
      graphdef, state, noise, cond, steps=steps, cfg_scale=3.0, solver=solver, grid=grid)
  reference = run("euler", args.reference_steps)
  heun = run("heun", args.steps, solvers.TimeGrid(args.grid))
  # Euler at the same number of model evaluations as Heun (2 per step).
  euler = run("euler", 2 * args.steps)
  errors = {"heun": rmse(heun, reference), "euler_same_evals": rmse(euler, reference)}
  print(f"latent RMSE to {args.reference_steps}-step Euler (random weights): heun@{args.steps} "
        f"{errors['heun']:.2e}, euler@{2 * args.steps} {errors['euler_same_evals']:.2e}")
  return {"latents": np.asarray(heun), "errors": errors}


if __name__ == "__main__":
  main()
