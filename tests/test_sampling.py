"""Euler/CFG sampler: official parity, no recompilation for new scale or seed, path agreement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aomni_jax import sampling
from aomni_jax.models.dit import DiffusionTransformer, DiTConditioning
from aomni_jax.parity import run_fixture
from tests.models.test_dit import TINY, _inputs, _randomize


def test_golden_sampler_fixture(golden_dir):
  results = run_fixture(golden_dir / "sampler")
  assert any("cached context" in r.name for r in results)
  assert len(results) >= 8
  failures = [r.line() for r in results if not r.passed]
  assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def tiny():
  model = _randomize(DiffusionTransformer(TINY, rngs=nnx.Rngs(0)))
  x, _, cross, mask, glob = _inputs(jax.random.key(5))
  return nnx.split(model), x, DiTConditioning(cross, mask, glob)


def test_new_cfg_scale_and_seed_do_not_recompile(tiny):
  (graphdef, state), x, cond = tiny
  sampling.sample(graphdef, state, x, cond, steps=3, cfg_scale=7.0)
  before = sampling._sample._cache_size()
  for scale, seed in ((6.0, 1), (2.5, 2), (7.0, 3)):
    noise = jax.random.normal(jax.random.key(seed), x.shape)
    sampling.sample(graphdef, state, noise, cond, steps=3, cfg_scale=scale, cfg_rescale=0.3)
  assert sampling._sample._cache_size() == before


def test_cached_context_path_equals_plain_path(tiny):
  (graphdef, state), x, cond = tiny
  plain = sampling.sample(graphdef, state, x, cond, steps=4, cfg_scale=5.0, cached_context=False)
  cached = sampling.sample(graphdef, state, x, cond, steps=4, cfg_scale=5.0, cached_context=True)
  np.testing.assert_allclose(cached, plain, atol=1e-4, rtol=1e-4)


def test_unguided_when_scale_is_one_equals_conditional_euler(tiny):
  (graphdef, state), x, cond = tiny
  model = nnx.merge(graphdef, state)
  out = sampling.sample(graphdef, state, x, cond, steps=2, cfg_scale=1.0)
  ref = x
  for t_cur, t_next in ((1.0, 0.5), (0.5, 0.0)):
    v = model(ref, jnp.full((x.shape[0],), t_cur), *cond)
    ref = ref + (t_next - t_cur) * v
  np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_variation_mode_runs_from_sigma_to_zero(tiny):
  (graphdef, state), x, cond = tiny
  init = jnp.ones_like(x)
  full = sampling.sample(graphdef, state, x, cond, steps=3, cfg_scale=4.0)
  np.testing.assert_allclose(sampling.sample(graphdef, state, x, cond, steps=3, cfg_scale=4.0,
                                             init_latents=init, init_noise_level=1.0),
                             full, atol=1e-6)
  unchanged = sampling.sample(graphdef, state, x, cond, steps=3, cfg_scale=4.0,
                              init_latents=init, init_noise_level=0.0)
  np.testing.assert_array_equal(unchanged, init)


def test_cfg_rescale_matches_the_official_formula():
  rng = np.random.default_rng(0)
  v_c, v_u = rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 5, 4))
  scale, phi = 4.0, 0.7
  cfg = v_u + (v_c - v_u) * scale
  # official: std over the channel axis (dim 1 of [B, C, T]), torch's unbiased std
  ratio = v_c.std(axis=-1, ddof=1, keepdims=True) / cfg.std(axis=-1, ddof=1, keepdims=True)
  expected = phi * cfg * ratio + (1 - phi) * cfg
  got = sampling.combine_guidance(jnp.asarray(v_c), jnp.asarray(v_u), scale, phi)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(sampling.combine_guidance(jnp.asarray(v_c), jnp.asarray(v_u),
                                                       scale, 0.0), cfg, rtol=1e-6, atol=1e-6)


def test_splash_sampler_under_its_mesh_matches_xla(tiny):
  """On a data × tensor mesh the sampler traces under the mesh, so splash (Pallas interpret mode
  here) runs inside shard_map on each device's shard; it agrees with the xla reference."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  from aomni_jax import parallel  # pylint: disable=g-import-not-at-top
  from aomni_jax.config import MeshConfig  # pylint: disable=g-import-not-at-top
  (graphdef, state), x, cond = tiny
  reference = sampling.sample(graphdef, state, x, cond, steps=2, cfg_scale=5.0)
  splash_cfg = dataclasses.replace(TINY, attention="splash")
  splash = nnx.eval_shape(lambda: DiffusionTransformer(splash_cfg, rngs=nnx.Rngs(0)))
  mesh = parallel.make_mesh(MeshConfig(data=2, fsdp=1, tensor=2), jax.devices()[:4])
  on_mesh = lambda tree, spec: jax.device_put(tree, NamedSharding(mesh, spec))
  out = sampling.sample(nnx.graphdef(splash), on_mesh(state, P()), on_mesh(x, P("data")),
                        on_mesh(cond, P("data")), steps=2, cfg_scale=5.0, mesh=mesh)
  assert len(out.sharding.device_set) == 4
  np.testing.assert_allclose(out, reference, atol=1e-4, rtol=1e-4)
