"""ODE sampler for rectified flow with classifier-free guidance (official_spec §7).

By default (the official sampler) t runs over `linspace(t_start, 0, steps + 1)`; the model is
evaluated at t_k and the Euler update is x ← x + (t_{k+1} − t_k)·v̂. Other solvers (Heun,
midpoint, DPM-Solver++(2M)) and time grids (shifted, logit-normal) are in `aomni_jax.solvers`.
With guidance, v̂ = v_u + s·(v_c − v_u) where the uncond branch has an all-zero cross-attention
context, the same mask and the same low-level tokens.

Inpainting (long-form windows): with `known` latents and a `known_mask`, the masked frames are
replaced at every step (and every intermediate solver point) by their value on the noise path at
the current t, x_t = (1 − t)·known + t·ε, with the same initial noise ε; the last step's
output is not pasted back, so the known frames come out harmonised with the generated ones.

The whole loop is one compiled `fori_loop`. The guidance scale, CFG rescale and noise are traced
values, so a new scale or seed does not recompile; `steps`, the solver, the grid and the path
choice are static.

Two paths compute the same thing:
  * plain: every step runs the DiT on the doubled batch [cond; uncond] with the context projected
    each time, exactly as the official code;
  * cached: the context K/V are projected once per generation, and the uncond half skips
    cross-attention (its keys and values are exactly zero, so its output is zero). The
    per-layer weights and K/V are also sliced once, before the loop, so no step copies them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from aomni_jax import parallel
from aomni_jax.models.dit import DiffusionTransformer, DiTConditioning
from aomni_jax.solvers import TimeGrid, check_solver, integrate, time_grid


def combine_guidance(v_cond: jax.Array, v_uncond: jax.Array, scale: jax.Array,
                     rescale: jax.Array) -> jax.Array:
  """CFG with optional rescale φ: v ← φ·v·(std_c / std_cfg) + (1 − φ)·v.

  Standard deviations are over channels (unbiased, as torch.std), per frame and per sample.
  """
  v = v_uncond + (v_cond - v_uncond) * scale
  std_c = jnp.std(v_cond, axis=-1, keepdims=True, ddof=1)
  std_v = jnp.std(v, axis=-1, keepdims=True, ddof=1)
  rescaled = rescale * v * (std_c / std_v) + (1.0 - rescale) * v
  return jnp.where(rescale != 0.0, rescaled, v)


def _double(a: jax.Array | None) -> jax.Array | None:
  return None if a is None else jnp.concatenate([a, a], axis=0)


def velocity_fn(dit: DiffusionTransformer, cond: DiTConditioning, *, guided: bool,
                cached_context: bool):
  """Returns v(x, t, scale, rescale) for the chosen path; the cached context is built here."""
  if not guided:
    context = (None if cond.cross_cond is None
               else dit.prepare_context(cond.cross_cond, cond.cross_mask))
    layers = dit.unstack_layers(context)
    return lambda x, t, scale, rescale: dit.forward(x, t, context, cond.global_cond,
                                                    layers=layers)

  if cached_context:
    context = dit.prepare_context(cond.cross_cond, cond.cross_mask)
    layers = dit.unstack_layers(context)
    global_cond = _double(cond.global_cond)

    def v_cached(x, t, scale, rescale):
      b = x.shape[0]
      out = dit.forward(_double(x), _double(t), context, global_cond, cross_rows=b,
                        layers=layers)
      return combine_guidance(out[:b], out[b:], scale, rescale)

    return v_cached

  cross = jnp.concatenate([cond.cross_cond, jnp.zeros_like(cond.cross_cond)], axis=0)
  mask = _double(cond.cross_mask)
  global_cond = _double(cond.global_cond)

  def v_plain(x, t, scale, rescale):
    b = x.shape[0]
    out = dit(_double(x), _double(t), cross, mask, global_cond)
    return combine_guidance(out[:b], out[b:], scale, rescale)

  return v_plain


def _inpaint(x, t, noise, known, known_mask):
  if known is None:
    return x
  return jnp.where(known_mask, (1.0 - t) * known + t * noise, x).astype(x.dtype)


@functools.partial(jax.jit, static_argnames=("graphdef", "steps", "guided", "cached_context",
                                             "solver", "grid"))
def _sample(graphdef, state, start, cond, scale, rescale, t_start, noise, known, known_mask, *,
            steps, guided, cached_context, solver, grid):
  dit = nnx.merge(graphdef, state)
  velocity = velocity_fn(dit, cond, guided=guided, cached_context=cached_context)
  batch = start.shape[0]
  inpaint = lambda x, t: _inpaint(x, t, noise, known, known_mask)

  def field(x, t):
    return velocity(inpaint(x, t), jnp.full((batch,), t, jnp.float32), scale, rescale)

  return integrate(field, start, time_grid(grid, steps, t_start), solver=solver,
                   before_step=inpaint)


def sample(graphdef: nnx.GraphDef, state: nnx.State, noise: jax.Array, cond: DiTConditioning, *,
           steps: int, cfg_scale: float = 7.0, cfg_rescale: float = 0.0,
           cached_context: bool = True, init_latents: jax.Array | None = None,
           init_noise_level: float = 1.0, known: jax.Array | None = None,
           known_mask: jax.Array | None = None, solver: str = "euler",
           grid: TimeGrid = TimeGrid(), mesh: jax.sharding.Mesh | None = None) -> jax.Array:
  """Integrates the flow from noise [B, T, C] to latents [B, T, C].

  Guidance is used when the context is present and `cfg_scale != 1` (the official rule).
  `init_latents` gives the variation mode: start at (1 − σ)·init + σ·noise, t from σ to 0.
  `known` [B, T, C] with `known_mask` [B, T, 1] (True = known) inpaints those frames.
  `solver` and `grid`: see `aomni_jax.solvers` (Euler on the linear grid is the official one).
  `mesh`: the mesh the inputs are sharded over; the loop traces under it (splash needs it).
  Without one, the current mesh (`parallel.mesh_context` around the call) is used, if any.
  """
  if steps < 1:
    raise ValueError(f"steps must be >= 1, got {steps}")
  check_solver(solver)
  if (known is None) != (known_mask is None):
    raise ValueError("give both known and known_mask, or neither")
  guided = cond.cross_cond is not None and cfg_scale != 1.0
  if init_latents is None:
    start, sigma = noise, 1.0
  else:
    sigma = min(float(init_noise_level), 1.0)  # the official code clamps sigma_max to 1
    start = (1.0 - sigma) * init_latents + sigma * noise
  if known_mask is not None:
    known_mask = jnp.asarray(known_mask, bool)
  with parallel.mesh_context(mesh):
    return _sample(graphdef, state, start, cond, jnp.float32(cfg_scale),
                   jnp.float32(cfg_rescale), jnp.float32(sigma), noise, known, known_mask,
                   steps=steps, guided=guided, cached_context=cached_context, solver=solver,
                   grid=grid)


def generate_latents(graphdef: nnx.GraphDef, state: nnx.State, key: jax.Array,
                     cond: DiTConditioning, *, batch: int, length: int, channels: int,
                     **kwargs) -> jax.Array:
  """Draws the noise from `key` (the official code draws it before running the conditioners)."""
  noise = jax.random.normal(key, (batch, length, channels), jnp.float32)
  return sample(graphdef, state, noise, cond, **kwargs)
