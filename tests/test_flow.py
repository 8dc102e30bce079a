"""Rectified-flow conventions: t = 0 data, t = 1 noise, v = ε − x₀, CFG dropout."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from aomni_jax import flow
from aomni_jax.config import FlowConfig
from aomni_jax.models.dit import DiTConditioning


def test_interpolation_endpoints_and_target():
  x0, eps = jnp.ones((3, 4, 2)), -2.0 * jnp.ones((3, 4, 2))
  t = jnp.array([0.0, 1.0, 0.25])
  xt = flow.interpolate(x0, eps, t)
  np.testing.assert_allclose(xt[0], x0[0])
  np.testing.assert_allclose(xt[1], eps[1])
  np.testing.assert_allclose(xt[2], 0.75 * x0[2] + 0.25 * eps[2])
  np.testing.assert_allclose(flow.velocity_target(x0, eps), eps - x0)
  # following v from t=1 down to t=0 lands on the data: x_0 = x_1 - v
  np.testing.assert_allclose(xt[1] - flow.velocity_target(x0, eps)[1], x0[1])


def test_t_samplers_cover_the_unit_interval():
  key = jax.random.key(0)
  for name in ("uniform", "logit_normal"):
    t = flow.sample_t(key, 4096, FlowConfig(t_sampler=name))
    assert t.shape == (4096,) and float(t.min()) > 0.0 and float(t.max()) < 1.0
  uniform = flow.sample_t(key, 4096, FlowConfig(t_sampler="uniform"))
  logit = flow.sample_t(key, 4096, FlowConfig(t_sampler="logit_normal"))
  assert abs(float(uniform.mean()) - 0.5) < 0.03
  assert float(jnp.mean(jnp.abs(logit - 0.5))) < float(jnp.mean(jnp.abs(uniform - 0.5)))


def test_cfg_dropout_zeroes_whole_samples_and_keeps_mask_and_low_level_tokens():
  b = 2000
  cond = DiTConditioning(jnp.ones((b, 3, 2)), jnp.ones((b, 3), bool), jnp.ones((b, 2, 2)))
  out = flow.cfg_dropout(jax.random.key(1), cond, 0.1)
  dropped = np.asarray(jnp.all(out.cross_cond == 0, axis=(1, 2)))
  kept = np.asarray(jnp.all(out.cross_cond == 1, axis=(1, 2)))
  assert np.all(dropped | kept)
  assert 0.07 < dropped.mean() < 0.13
  assert out.cross_mask is cond.cross_mask and out.global_cond is cond.global_cond


def test_loss_is_zero_for_the_exact_velocity_and_positive_otherwise():
  cfg = FlowConfig(cfg_dropout_prob=0.0)
  x0 = jax.random.normal(jax.random.key(2), (4, 6, 3))
  key = jax.random.key(3)
  k_t, k_noise, _ = jax.random.split(key, 3)
  noise = jax.random.normal(k_noise, x0.shape)
  t = flow.sample_t(k_t, 4, cfg)
  cond = DiTConditioning(None, None, None)

  def oracle(x_t, tt, c):  # recovers ε − x₀ from x_t and the known noise
    np.testing.assert_allclose(tt, t)
    return noise - x0

  loss, aux = flow.rectified_flow_loss(oracle, x0, cond, key, cfg)
  assert float(loss) < 1e-10 and aux["per_sample_loss"].shape == (4,)
  loss, _ = flow.rectified_flow_loss(lambda x, tt, c: jnp.zeros_like(x), x0, cond, key,
                                     dataclasses.replace(cfg))
  np.testing.assert_allclose(loss, jnp.mean(jnp.square(noise - x0)), rtol=1e-5)
