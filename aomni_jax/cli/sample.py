"""`aomni-sample`: smoke-run the jitted ODE/CFG sampler and report what happened.

It builds the configured DiT with random weights and random conditioning and never loads trained
weights: it shows the compiled sampler end to end (compile time, step time, latent statistics) on
any device, not what a trained model sounds like.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.cli import logs
from aomni_jax.cli.errors import ArgumentParser, UserError, console
from aomni_jax.config import load_config
from aomni_jax.models import registry
from aomni_jax.models.dit import DiTConditioning
from aomni_jax.sampling import sample
from aomni_jax.solvers import grid_from_config


def random_conditioning(cfg, key: jax.Array, batch: int) -> DiTConditioning:
  """Context-shaped random tokens: [omni pad_length + transcript] and [sync + mel] tokens."""
  m = cfg.model
  n_cross = m.omni.pad_length + m.transcript.proj_seq_len
  n_global = m.sync.out_seq_len + m.mel.seq_len
  k1, k2 = jax.random.split(key)
  cross = jax.random.normal(k1, (batch, n_cross, m.dit.cond_token_dim))
  valid = jnp.arange(n_cross)[None, :] < (n_cross - batch + jnp.arange(batch))[:, None]
  glob = jax.random.normal(k2, (batch, n_global, m.dit.global_cond_dim))
  return DiTConditioning(cross, valid, glob)


@console("aomni-sample")
def main(argv: list[str] | None = None) -> int:
  parser = ArgumentParser(prog="aomni-sample", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="configs/tiny.py", help="configs/NAME.py[:arg]")
  parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                      help="config overrides, e.g. dit.depth=2 sampling.steps=10")
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--steps", type=int, default=None, help="default: sampling.steps")
  parser.add_argument("--cfg-scale", type=float, default=None, help="default: sampling.cfg_scale")
  logs.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  logs.configure(args.verbose)
  for flag, value in (("--batch", args.batch), ("--steps", args.steps)):
    if value is not None and value < 1:
      raise UserError(f"{flag} must be >= 1, got {value}")
  cfg = load_config(args.config, args.set)
  steps = args.steps or cfg.sampling.steps
  scale = cfg.sampling.cfg_scale if args.cfg_scale is None else args.cfg_scale
  model = registry.build_dit(cfg.model, nnx.Rngs(args.seed))
  graphdef, state = nnx.split(model)
  n_params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  key_noise, key_cond = jax.random.split(jax.random.key(args.seed))
  cond = random_conditioning(cfg, key_cond, args.batch)
  noise = jax.random.normal(key_noise, (args.batch, cfg.model.latent_length,
                                        cfg.model.dit.io_channels))
  print(f"config {cfg.name}: DiT {n_params:,} params (random weights), "
        f"latents {tuple(noise.shape)}, {steps} {cfg.sampling.solver} steps ({cfg.sampling.grid} grid), cfg {scale}, "
        f"device {jax.devices()[0].platform}")
  for run in ("compile + run", "run"):
    start = time.perf_counter()
    latents = jax.block_until_ready(sample(graphdef, state, noise, cond, steps=steps,
                                           cfg_scale=scale,
                                           cached_context=cfg.sampling.cached_context,
                                           solver=cfg.sampling.solver,
                                           grid=grid_from_config(cfg.sampling)))
    print(f"{run}: {time.perf_counter() - start:.3f} s")
  latents = np.asarray(latents)
  if not np.all(np.isfinite(latents)):
    print("aomni-sample: the sampler produced non-finite latents", file=sys.stderr)
    return 1
  print(f"latents: mean {latents.mean():+.4f}, std {latents.std():.4f}, "
        f"min {latents.min():+.3f}, max {latents.max():+.3f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
