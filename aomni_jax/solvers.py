"""ODE solvers and time grids for the rectified-flow sampler.

The flow runs from noise at t = 1 to data at t = 0 along dx/dt = v(x, t), with the
parametrisation x_t = (1 − t)·x₀ + t·ε (so α_t = 1 − t, σ_t = t, and x̂₀ = x − t·v̂).

A solver is one step of that ODE from t_cur to t_next, written so that every solver runs inside
the sampler's single `fori_loop`: it gets the velocity field, the step index, the state and a
carry of the same shape as the state (the multistep solver keeps its previous x̂₀ there) and
returns both. The number of model evaluations per step is fixed per solver, so a solver choice is
one static argument and one compile.

Solvers:
  * "euler": x ← x + (t_next − t_cur)·v(x, t_cur). The official sampler; 1 evaluation per step.
  * "heun": Euler predictor, trapezoidal corrector (2nd order); 2 evaluations per step.
  * "midpoint": velocity at the half step (2nd order); 2 evaluations per step.
  * "dpmpp_2m": DPM-Solver++(2M) on x̂₀ predictions (Lu et al. 2022) in the flow parametrisation;
    2nd order with 1 evaluation per step, first order on the first and the last step.

Time grids (from t_start to 0, `steps + 1` points):
  * "linear": `linspace(t_start, 0)`, the official grid.
  * "shifted": t ↦ s·t / (1 + (s − 1)·t) applied to the linear grid (SD3's shift; s > 1 spends
    more steps at high noise).
  * "logit_normal": the quantiles of a logit-normal(mean, std) — the steps sit where the
    training t-sampler of the same name puts its mass.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr, ndtri

from aomni_jax.config import SamplingConfig

# v(x, t) with a scalar t; guidance and inpainting are already applied inside.
Field = Callable[[jax.Array, jax.Array], jax.Array]
# (field, k, x, carry, t_cur, t_next, t_prev) -> (x_next, carry)
StepFn = Callable[..., tuple[jax.Array, jax.Array]]

GRIDS = ("linear", "shifted", "logit_normal")


@dataclasses.dataclass(frozen=True)
class TimeGrid:
  """Where the solver evaluates the model: a kind and its parameters (hashable, a static arg)."""

  kind: str = "linear"
  shift: float = 3.0  # "shifted"
  mean: float = 0.0  # "logit_normal"
  std: float = 1.0  # "logit_normal"

  def __post_init__(self):
    if self.kind not in GRIDS:
      raise ValueError(f"unknown time grid {self.kind!r}; choose one of {', '.join(GRIDS)}")
    if self.kind == "shifted" and self.shift <= 0:
      raise ValueError(f"the grid shift must be > 0, got {self.shift}")
    if self.kind == "logit_normal" and self.std <= 0:
      raise ValueError(f"the logit-normal std must be > 0, got {self.std}")


def _shift(t: jax.Array, s: float) -> jax.Array:
  return s * t / (1.0 + (s - 1.0) * t)


def time_grid(grid: TimeGrid, steps: int, t_start: jax.Array) -> jax.Array:
  """`steps + 1` decreasing times from t_start to 0 (float32).

  Each grid is a warp of a uniform grid; with t_start < 1 (variation mode) the uniform grid
  starts where the warp gives t_start, so a partial run uses the same warp as a full one.
  """
  if grid.kind == "linear":
    return jnp.linspace(t_start, 0.0, steps + 1, dtype=jnp.float32)
  if grid.kind == "shifted":
    u_start = _shift(t_start, 1.0 / grid.shift)  # the inverse warp
    return _shift(jnp.linspace(u_start, 0.0, steps + 1, dtype=jnp.float32), grid.shift)
  # Quantiles u of the logit-normal, pinned to exactly t_start and 0 at the ends.
  u_start = ndtr((jnp.log(t_start) - jnp.log1p(-t_start) - grid.mean) / grid.std)
  u = jnp.linspace(u_start, 0.0, steps + 1, dtype=jnp.float32)
  ts = jax.nn.sigmoid(grid.mean + grid.std * ndtri(jnp.clip(u, 1e-6, 1.0 - 1e-6)))
  return ts.at[0].set(t_start).at[-1].set(0.0)


def _euler(field: Field, k, x, carry, t_cur, t_next, t_prev):
  del k, t_prev
  return (x + (t_next - t_cur) * field(x, t_cur)).astype(x.dtype), carry


def _heun(field: Field, k, x, carry, t_cur, t_next, t_prev):
  del k, t_prev
  h = t_next - t_cur
  v0 = field(x, t_cur)
  v1 = field((x + h * v0).astype(x.dtype), t_next)
  return (x + h * 0.5 * (v0 + v1)).astype(x.dtype), carry


def _midpoint(field: Field, k, x, carry, t_cur, t_next, t_prev):
  del k, t_prev
  h = t_next - t_cur
  v0 = field(x, t_cur)
  v_mid = field((x + 0.5 * h * v0).astype(x.dtype), t_cur + 0.5 * h)
  return (x + h * v_mid).astype(x.dtype), carry


def _log_snr(t: jax.Array) -> jax.Array:
  """λ = log(α/σ) = log((1 − t)/t); −inf at t = 1, +inf at t = 0."""
  return jnp.log1p(-t) - jnp.log(t)


def _dpmpp_2m(field: Field, k, x, carry, t_cur, t_next, t_prev):
  """x_next = (σ_n/σ_c)·x + (α_n − σ_n·α_c/σ_c)·D, D = x̂₀ extrapolated from the last two.

  The coefficient of D is α_n·(1 − e^{−h}) written without λ, so the first step from t = 1
  (λ = −inf) is exact; with D = x̂₀ the step equals Euler's.
  """
  x0 = x - t_cur * field(x, t_cur)
  h = _log_snr(t_next) - _log_snr(t_cur)
  h_prev = _log_snr(t_cur) - _log_snr(t_prev)
  second_order = (k > 0) & (t_next > 0) & jnp.isfinite(h) & jnp.isfinite(h_prev)
  half_inv_r = jnp.where(second_order, h / (2.0 * jnp.where(second_order, h_prev, 1.0)), 0.0)
  d = x0 + half_inv_r * (x0 - carry)
  x_next = (t_next / t_cur) * x + ((1.0 - t_next) - t_next * (1.0 - t_cur) / t_cur) * d
  return x_next.astype(x.dtype), x0.astype(carry.dtype)


SOLVERS: dict[str, StepFn] = {"euler": _euler, "heun": _heun, "midpoint": _midpoint,
                              "dpmpp_2m": _dpmpp_2m}
# Model evaluations per step, for comparing solvers at equal cost.
EVALS_PER_STEP = {"euler": 1, "heun": 2, "midpoint": 2, "dpmpp_2m": 1}


def check_solver(name: str) -> StepFn:
  """The step function of `name`; an unknown name is refused with the known ones listed."""
  if name not in SOLVERS:
    raise ValueError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}")
  return SOLVERS[name]


def integrate(field: Field, start: jax.Array, ts: jax.Array, *, solver: str,
              before_step: Callable[[jax.Array, jax.Array], jax.Array] = lambda x, t: x
              ) -> jax.Array:
  """Runs `solver` over the grid `ts` in one `fori_loop`; `before_step(x, t_cur)` is applied to
  the state at the start of every step (the sampler's inpainting)."""
  step_fn = check_solver(solver)
  steps = ts.shape[0] - 1

  def step(k, state):
    x, carry = state
    t_cur, t_next = ts[k], ts[k + 1]
    t_prev = ts[jnp.maximum(k - 1, 0)]
    return step_fn(field, k, before_step(x, t_cur), carry, t_cur, t_next, t_prev)

  x, _ = jax.lax.fori_loop(0, steps, step, (start, jnp.zeros_like(start)))
  return x


def grid_from_config(cfg: SamplingConfig) -> TimeGrid:
  """The time grid that `sampling.grid*` names."""
  return TimeGrid(cfg.grid, shift=cfg.grid_shift, mean=cfg.grid_mean, std=cfg.grid_std)
