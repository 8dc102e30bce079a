"""The jitted train step on the 8 fake CPU devices: sharded == single device, accumulation,
finite non-zero gradients, and the non-finite guard."""

import dataclasses

import jax
import numpy as np
import pytest

from aomni_jax import parallel
from aomni_jax.config import load_config
from aomni_jax.train import features, state as state_lib, step as step_lib

BATCH = 8


def _config(mesh, **train):
  config = load_config("configs/tiny.py", ["train.warmup_steps=1"])
  data, fsdp, tensor = mesh
  return dataclasses.replace(
      config, mesh=dataclasses.replace(config.mesh, data=data, fsdp=fsdp, tensor=tensor),
      train=dataclasses.replace(config.train, batch_size=BATCH, **train))


def _batch(config, seed=0):
  return features.stand_in_step_batch(config, BATCH, seed)


def _run(config, batch, steps):
  devices = jax.devices()[:int(np.prod([config.mesh.data, config.mesh.fsdp, config.mesh.tensor]))]
  mesh = parallel.make_mesh(config.mesh, devices)
  spec = state_lib.make_state_spec(config, mesh)
  state = state_lib.init_state(config, spec)
  train_step = step_lib.build_train_step(config, mesh, features.step_batch_shapes(config, BATCH),
                                         spec)
  global_batch = parallel.shard_batch(batch, train_step.batch_shardings)
  history = []
  for _ in range(steps):
    state, metrics = train_step.fn(state, global_batch, jax.random.PRNGKey(3))
    history.append(jax.device_get(metrics))
  return state, history, train_step


ACCUM = 2  # every run accumulates over 2 micro-batches, so the scan path is what is compared


@pytest.fixture(scope="module")
def reference():
  config = _config((1, 1, 1), grad_accum_steps=ACCUM)
  return config, _run(config, _batch(config), steps=2)


# Micro-batches of 4 must divide data × fsdp (an indivisible batch is an error, not replicated).
@pytest.mark.parametrize("mesh", [(1, 4, 1), (2, 2, 2)])
def test_sharded_step_matches_single_device(reference, mesh):
  _, (ref_state, ref_history, _) = reference
  config = _config(mesh, grad_accum_steps=ACCUM)
  state, history, _ = _run(config, _batch(config), steps=2)
  for ours, ref in zip(history, ref_history):
    np.testing.assert_allclose(ours["loss"], ref["loss"], rtol=2e-5)
    # Gradient norms are sums of many small terms reduced in another order on 8 devices.
    for name in ("grad_norm", "grad_norm_dit", "grad_norm_heads"):
      np.testing.assert_allclose(ours[name], ref[name], rtol=1e-3, err_msg=name)
  # The optimizer moments are linear in the gradients, so they compare every gradient element,
  # however small its norm share (a doubled depthwise-conv kernel gradient hid below 1e-3 of
  # grad_norm_heads once; see models/transcript.depthwise_conv).
  for ours, ref in zip(jax.tree.leaves(jax.device_get(state.opt_state)),
                       jax.tree.leaves(jax.device_get(ref_state.opt_state)), strict=True):
    if np.issubdtype(np.asarray(ref).dtype, np.floating):
      np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3 * np.max(np.abs(ref)) + 1e-30)
  # Adam moves every weight by ~lr (1e-3) whatever its gradient's size, so reduction-order noise
  # in near-zero gradients shows up at a fraction of lr; allow a tenth of one update.
  for ours, ref in zip(jax.tree.leaves(jax.device_get(state.params)),
                      jax.tree.leaves(jax.device_get(ref_state.params)), strict=True):
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)
  # The sharded run really is sharded: the DiT's stacked kernels are split over devices.
  kernel = state.params["dit"]["blocks"]["ff"]["proj_in"]["kernel"]
  assert not kernel.sharding.is_fully_replicated


def test_gradients_finite_and_non_zero(reference):
  _, (state, history, _) = reference
  for metrics in history:
    assert metrics["nonfinite"] == 0
    assert np.isfinite(metrics["grad_norm_dit"]) and metrics["grad_norm_dit"] > 0
  # At the official init every attention/FF output projection is zero, so the conditioning (the
  # heads' output) cannot influence the prediction and the heads' gradient is exactly zero; one
  # update later it flows.
  assert history[0]["grad_norm_heads"] == 0
  assert np.isfinite(history[1]["grad_norm_heads"]) and history[1]["grad_norm_heads"] > 0
  assert history[1]["loss"] != history[0]["loss"]
  assert int(state.step) == 2
  # EMA moved towards the params but is not equal to them.
  ema, params = jax.device_get((state.ema_params, state.params))
  assert any(not np.array_equal(e, p) for e, p in zip(jax.tree.leaves(ema),
                                                      jax.tree.leaves(params)))


def test_nonfinite_batch_discards_the_update(reference):
  config, (state, _, train_step) = reference
  before = jax.device_get(state)
  batch = _batch(config, seed=1)
  batch["latent_mean"][0, 0, 0] = np.nan
  state = jax.tree.map(lambda x, s: jax.device_put(x, s), before, train_step.spec.shardings)
  new_state, metrics = train_step.fn(state, parallel.shard_batch(batch, train_step.batch_shardings),
                                     jax.random.PRNGKey(3))
  assert int(metrics["nonfinite"]) == 1
  assert int(new_state.step) == int(before.step) + 1
  after = jax.device_get(new_state)
  for name in ("params", "opt_state", "ema_params"):
    for a, b in zip(jax.tree.leaves(getattr(after, name)), jax.tree.leaves(getattr(before, name))):
      np.testing.assert_array_equal(a, b)
