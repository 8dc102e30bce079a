"""Solvers and time grids: convergence order on a flow with a known solution, grid shapes, and
the sampler's Euler path staying the official loop bit for bit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aomni_jax import config as config_lib
from aomni_jax import sampling, solvers
from aomni_jax.models.dit import DiffusionTransformer, DiTConditioning
from tests.models.test_dit import TINY, _inputs, _randomize

# Data x0 ~ N(M, S²): the rectified-flow velocity is linear in x and the ODE maps ε at t = 1
# exactly to M + S·ε at t = 0, so each solver's error can be measured without a reference run.
M, S = 0.7, 0.3


def gaussian_field(x: jax.Array, t: jax.Array) -> jax.Array:
  var = (1.0 - t) ** 2 * S**2 + t**2
  return -M + (t - (1.0 - t) * S**2) / var * (x - (1.0 - t) * M)


def solve(solver: str, steps: int, grid=solvers.TimeGrid()) -> float:
  eps = jnp.linspace(-2.0, 2.0, 9, dtype=jnp.float32)
  ts = solvers.time_grid(grid, steps, jnp.float32(1.0))
  x = solvers.integrate(gaussian_field, eps, ts, solver=solver)
  return float(jnp.max(jnp.abs(x - (M + S * eps))))


@pytest.mark.parametrize("solver,order", [("euler", 1), ("heun", 2), ("midpoint", 2)])
def test_error_falls_at_least_with_the_solver_order(solver, order):
  errors = [solve(solver, n) for n in (8, 16, 32)]
  assert errors[0] > errors[1] > errors[2] > 0
  observed = np.log2(errors[1] / errors[2])
  # A first-order method halves the error per doubling, a second-order one quarters it (the
  # midpoint rule does better still on this linear field).
  assert observed >= order - 0.35, errors
  assert observed <= (1.35 if order == 1 else 3.5), errors


def test_dpmpp_2m_converges_and_beats_euler_at_equal_cost():
  # One model evaluation per step, like Euler; first order on the first and last steps, so its
  # error falls between first and second order over these step counts.
  errors = [solve("dpmpp_2m", n) for n in (32, 64, 128)]
  assert errors[0] > errors[1] > errors[2] > 0
  for n, error in zip((32, 64, 128), errors):
    assert error < 0.5 * solve("euler", n)


@pytest.mark.parametrize("grid", [solvers.TimeGrid("shifted", shift=3.0),
                                  solvers.TimeGrid("logit_normal", mean=0.0, std=1.0)])
def test_grids_run_from_t_start_to_zero_and_decrease(grid):
  for t_start in (1.0, 0.6):
    ts = np.asarray(solvers.time_grid(grid, 10, jnp.float32(t_start)))
    assert ts.shape == (11,)
    assert ts[0] == pytest.approx(t_start) and ts[-1] == 0.0
    assert np.all(np.diff(ts) < 0)
  # every grid is still a convergent discretisation
  assert solve("heun", 32, grid) < solve("heun", 8, grid)


def test_shifted_grid_spends_more_steps_at_high_noise():
  linear = np.asarray(solvers.time_grid(solvers.TimeGrid(), 10, jnp.float32(1.0)))
  shifted = np.asarray(solvers.time_grid(solvers.TimeGrid("shifted", shift=3.0), 10,
                                         jnp.float32(1.0)))
  assert np.all(shifted[1:-1] > linear[1:-1])


def test_unknown_names_are_refused():
  with pytest.raises(ValueError, match="unknown solver"):
    solvers.check_solver("rk45")
  with pytest.raises(ValueError, match="unknown time grid"):
    solvers.TimeGrid("cosine")


def test_config_names_agree_with_the_solvers():
  for name in solvers.SOLVERS:
    config_lib.load_config("configs/tiny.py", [f"sampling.solver={name}"])
  for grid in solvers.GRIDS:
    config_lib.load_config("configs/tiny.py", [f"sampling.grid={grid}"])
  with pytest.raises(config_lib.ConfigError):
    config_lib.load_config("configs/tiny.py", ["sampling.solver=rk45"])


@functools.partial(jax.jit, static_argnames=("graphdef", "steps"))
def _official_euler(graphdef, state, x, cond, scale, *, steps):
  """The sampler loop as it was before solvers existed (Euler, linear grid, cached context)."""
  velocity = sampling.velocity_fn(nnx.merge(graphdef, state), cond, guided=True,
                                  cached_context=True)
  ts = jnp.linspace(1.0, 0.0, steps + 1, dtype=jnp.float32)

  def step(k, x):
    v = velocity(x, jnp.full((x.shape[0],), ts[k], jnp.float32), scale, jnp.float32(0.0))
    return (x + (ts[k + 1] - ts[k]) * v).astype(x.dtype)

  return jax.lax.fori_loop(0, steps, step, x)


def test_sampler_euler_is_the_official_loop_and_heun_runs():
  model = _randomize(DiffusionTransformer(TINY, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  x, _, cross, mask, glob = _inputs(jax.random.key(5))
  cond = DiTConditioning(cross, mask, glob)
  euler = sampling.sample(graphdef, state, x, cond, steps=4, cfg_scale=3.0)
  np.testing.assert_array_equal(euler, _official_euler(graphdef, state, x, cond,
                                                       jnp.float32(3.0), steps=4))
  out = sampling.sample(graphdef, state, x, cond, steps=4, cfg_scale=3.0, solver="heun",
                        grid=solvers.TimeGrid("shifted"))
  assert out.shape == x.shape and bool(jnp.all(jnp.isfinite(out)))
  assert not np.allclose(out, euler)
