"""DiT: official parity, full-size shape, gradients, and execution variants that must agree."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aomni_jax.config import DiTConfig
from aomni_jax.models.dit import DiffusionTransformer
from aomni_jax.parity import run_fixture

TINY = DiTConfig(io_channels=4, embed_dim=64, depth=2, num_heads=2, cond_token_dim=8,
                 global_cond_dim=8, timestep_features_dim=16)


def test_golden_dit_fixture_within_1e4(golden_dir):
  results = run_fixture(golden_dir / "dit")
  names = {r.name.split(" ")[0] for r in results}
  assert {"out_a", "out_b", "out_c", "out_d", "out_e", "out_f"} <= names
  failures = [r.line() for r in results if not r.passed]
  assert not failures, "\n".join(failures)
  assert all(r.atol == 1e-4 for r in results)


def test_full_size_builds_abstractly_with_official_parameter_count():
  model = nnx.eval_shape(lambda: DiffusionTransformer(DiTConfig(), rngs=nnx.Rngs(0)))
  params = nnx.state(model, nnx.Param)
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  assert count == 3_037_311_104
  specs = nnx.get_partition_spec(params)
  qkv = specs["blocks"]["self_attn"]["qkv"]["kernel"].get_value()
  assert tuple(qkv) == ("layers", "embed", None, "qkv")
  assert all(p is not None for p in jax.tree.leaves(specs))


def _inputs(key, b=2, t=5, m=6, p=3, cfg=TINY):
  ks = jax.random.split(key, 4)
  x = jax.random.normal(ks[0], (b, t, cfg.io_channels))
  cross = jax.random.normal(ks[1], (b, m, cfg.cond_token_dim))
  mask = jnp.arange(m)[None, :] < jnp.array([[4], [6]])
  glob = jax.random.normal(ks[2], (b, p, cfg.global_cond_dim))
  tt = jax.random.uniform(ks[3], (b,))
  return x, tt, cross, mask, glob


def _randomize(model: nnx.Module, seed: int = 1) -> nnx.Module:
  """Zero-initialised branches would hide bugs: give every variable random values."""
  state = nnx.state(model)
  leaves, tree = jax.tree.flatten(state)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  leaves = [0.3 * jax.random.normal(k, l.shape, l.dtype) + (1.0 if l.ndim == 1 else 0.0)
            for k, l in zip(keys, leaves)]
  nnx.update(model, jax.tree.unflatten(tree, leaves))
  return model


def test_gradient_is_finite_and_nonzero_for_every_parameter():
  model = _randomize(DiffusionTransformer(TINY, rngs=nnx.Rngs(0)))
  x, t, cross, mask, glob = _inputs(jax.random.key(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(params):
    out = nnx.merge(graphdef, params, rest)(x, t, cross, mask, glob)
    return jnp.mean(jnp.square(out - 1.0))

  grads = jax.grad(loss)(params)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    g = np.asarray(g)
    assert np.all(np.isfinite(g)), path
    assert np.any(g != 0), f"zero gradient for {jax.tree_util.keystr(path)}"


@pytest.mark.parametrize("variant", [dict(scan_layers=False), dict(remat="full"),
                                     dict(remat="dots"), dict(remat="attn_ff_out")])
def test_scan_and_remat_variants_match_the_default(variant):
  base = _randomize(DiffusionTransformer(TINY, rngs=nnx.Rngs(0)))
  other = DiffusionTransformer(dataclasses.replace(TINY, **variant), rngs=nnx.Rngs(0))
  nnx.update(other, nnx.state(base))
  inputs = _inputs(jax.random.key(2))
  np.testing.assert_allclose(other(*inputs), base(*inputs), atol=1e-5, rtol=1e-5)
  grad = lambda m: jax.grad(lambda s: jnp.sum(nnx.merge(nnx.graphdef(m), s)(*inputs)))(
      nnx.state(m))
  for a, b in zip(jax.tree.leaves(grad(other)), jax.tree.leaves(grad(base))):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_masked_context_tokens_do_not_influence_the_output():
  model = _randomize(DiffusionTransformer(TINY, rngs=nnx.Rngs(0)))
  x, t, cross, mask, glob = _inputs(jax.random.key(3))
  changed = cross.at[0, 4:].set(100.0)  # sample 0 attends to its first 4 tokens only
  a = model(x, t, cross, mask, glob)
  b = model(x, t, changed, mask, glob)
  np.testing.assert_allclose(a, b, atol=1e-5)
  c = model(x, t, cross.at[0, 1].set(100.0), mask, glob)
  assert not np.allclose(a[0], c[0], atol=1e-3)


def test_splash_backend_matches_xla():
  """Splash (Pallas interpret mode on CPU) with compacted context keys equals the reference."""
  base = _randomize(DiffusionTransformer(TINY, rngs=nnx.Rngs(0)))
  splash = DiffusionTransformer(dataclasses.replace(TINY, attention="splash"), rngs=nnx.Rngs(0))
  nnx.update(splash, nnx.state(base))
  inputs = _inputs(jax.random.key(6))
  np.testing.assert_allclose(splash(*inputs), base(*inputs), atol=1e-4, rtol=1e-4)


def test_cudnn_backend_rejects_fp32_with_a_clear_message():
  model = DiffusionTransformer(dataclasses.replace(TINY, attention="cudnn"), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="bf16"):
    model(*_inputs(jax.random.key(4)))
