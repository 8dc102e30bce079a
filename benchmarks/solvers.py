"""How many sampling steps can be dropped: latent RMSE of each solver vs a 200-step Euler reference.

For every solver (aomni_jax.solvers) and step count, the guided (CFG) sampler is run from the
same noise and conditioning, and the RMSE of its latents to a 200-step Euler run is recorded,
with the model evaluations it cost. Two models:

    python benchmarks/solvers.py --tiny    # CPU: the tiny DiT, trained here on synthetic latents
    python benchmarks/solvers.py           # GPU: the full-size DiT with random weights

The tiny model is trained for `--train-steps` on smooth synthetic latents (sums of random
sinusoids) so that its field has structure; neither model is the released Audio-Omni, so the
numbers say how the solvers compare on this architecture, not how a trained checkpoint sounds.
Writes the JSON through record.save and a plot (PNG) next to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import dit as dit_bench
import record
from aomni_jax import flow, solvers
from aomni_jax.config import FlowConfig, load_config
from aomni_jax.models.dit import DiffusionTransformer
from aomni_jax.sampling import sample

ROOT = pathlib.Path(__file__).resolve().parent.parent


def synthetic_latents(key: jax.Array, batch: int, length: int, channels: int) -> jax.Array:
  """Smooth structured latents: per channel, a sum of three sinusoids of random frequency."""
  k1, k2, k3 = jax.random.split(key, 3)
  t = jnp.linspace(0.0, 1.0, length)[None, :, None, None]
  freq = jax.random.uniform(k1, (batch, 1, channels, 3), minval=1.0, maxval=8.0)
  phase = jax.random.uniform(k2, (batch, 1, channels, 3), maxval=2 * jnp.pi)
  amp = jax.random.uniform(k3, (batch, 1, channels, 3), minval=0.3, maxval=1.0)
  return (amp * jnp.sin(2 * jnp.pi * freq * t + phase)).sum(-1)


def trained_tiny(steps: int, shape: dict, batch: int = 8):
  """The tiny DiT (configs/tiny.py) trained with the rectified-flow loss on synthetic latents."""
  cfg = load_config(str(ROOT / "configs" / "tiny.py")).model.dit
  graphdef, params = nnx.split(DiffusionTransformer(cfg, rngs=nnx.Rngs(0)))
  tx = optax.adam(1e-3)
  cond = dit_bench.conditioning(jax.random.key(1), batch, shape, cfg)
  flow_cfg = FlowConfig(cfg_dropout_prob=0.1)

  @jax.jit
  def step(params, opt_state, key):
    data_key, loss_key = jax.random.split(key)
    x0 = synthetic_latents(data_key, batch, shape["latent"], cfg.io_channels)

    def loss_fn(p):
      model = nnx.merge(graphdef, p)
      return flow.rectified_flow_loss(lambda x, t, c: model(x, t, *c), x0, cond, loss_key,
                                      flow_cfg)[0]

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = tx.init(params)
  for i in range(steps):
    params, opt_state, loss = step(params, opt_state, jax.random.key(100 + i))
  print(f"tiny DiT trained {steps} steps on synthetic latents, final loss {float(loss):.4f}")
  return cfg, graphdef, params


def plot(rows: list[dict], reference_steps: int, title: str, path: pathlib.Path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  for solver, grid in sorted({(r["solver"], r["grid"]) for r in rows}):
    mine = sorted((r for r in rows if (r["solver"], r["grid"]) == (solver, grid)),
                  key=lambda r: r["evals"])
    ax.loglog([r["evals"] for r in mine], [r["rmse"] for r in mine], "o-",
              label=f"{solver} ({grid})")
  ax.set_xlabel("model evaluations (CFG pairs) per generation")
  ax.set_ylabel(f"latent RMSE vs {reference_steps}-step Euler")
  ax.set_title(title)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  print(f"plot: {path}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tiny", action="store_true", help="CPU: the trained tiny DiT")
  parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 25, 50, 100])
  parser.add_argument("--reference-steps", type=int, default=200)
  parser.add_argument("--solvers", nargs="+", default=list(solvers.SOLVERS),
                      choices=list(solvers.SOLVERS))
  parser.add_argument("--grids", nargs="+", default=["linear", "shifted"], choices=solvers.GRIDS)
  parser.add_argument("--clips", type=int, default=2)
  parser.add_argument("--cfg-scale", type=float, default=7.0)
  parser.add_argument("--train-steps", type=int, default=300, help="--tiny only")
  parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"),
                      help="full size only: parameters and compute (bf16 as deployed)")
  args = parser.parse_args()

  if args.tiny:
    shape = dict(latent=256, prepend=24, context=144, qwen_valid=(1, 128))
    cfg, graphdef, state = trained_tiny(args.train_steps, shape)
    model = f"tiny DiT trained {args.train_steps} steps on synthetic latents"
  else:
    shape = dit_bench.FULL
    cfg = dataclasses.replace(load_config(str(ROOT / "configs" / "audio_omni.py")).model.dit,
                              dtype=args.dtype, param_dtype=args.dtype, attention="auto")
    graphdef, state = dit_bench.random_params(cfg)
    model = f"full-size DiT (3.04 B), random weights, {args.dtype}"
  cond = dit_bench.conditioning(jax.random.key(7), args.clips, shape, cfg)
  noise = jax.random.normal(jax.random.key(8), (args.clips, shape["latent"], cfg.io_channels))

  def run(solver: str, steps: int, grid: str) -> np.ndarray:
    return np.asarray(sample(graphdef, state, noise, cond, steps=steps, cfg_scale=args.cfg_scale,
                             solver=solver, grid=solvers.TimeGrid(grid)), np.float32)

  reference = run("euler", args.reference_steps, "linear")
  scale = float(np.sqrt(np.mean(reference ** 2)))
  rows = []
  for grid in args.grids:
    for solver in args.solvers:
      for steps in args.steps:
        rmse = float(np.sqrt(np.mean((run(solver, steps, grid) - reference) ** 2)))
        evals = steps * solvers.EVALS_PER_STEP[solver]
        rows.append(dict(what=f"{solver}/{grid}@{steps}", solver=solver, grid=grid, steps=steps,
                         evals=evals, rmse=rmse, relative_rmse=rmse / scale,
                         summary=f"{solver} {grid} {steps} steps ({evals} evals): RMSE {rmse:.3e}"))
        print(rows[-1]["summary"], flush=True)

  print("\n| solver | grid | " + " | ".join(f"{s} steps" for s in args.steps) + " |")
  print("|---|---|" + "---|" * len(args.steps))
  for grid in args.grids:
    for solver in args.solvers:
      cells = [f"{r['rmse']:.2e}" for r in rows if (r["solver"], r["grid"]) == (solver, grid)]
      print(f"| {solver} | {grid} | " + " | ".join(cells) + " |")
  config = dict(model=model, reference=f"euler/linear@{args.reference_steps}",
                reference_rms=scale, cfg_scale=args.cfg_scale, clips=args.clips, shape=shape,
                steps=args.steps)
  path = record.save("solvers_tiny" if args.tiny else "solvers", rows, config)
  plot(rows, args.reference_steps, model, path.with_suffix(".png"))


if __name__ == "__main__":
  main()
