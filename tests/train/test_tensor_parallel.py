"""Head-aligned tensor parallelism of the fused projections (qkv, cross kv, [value | gate]).

tensor=2 must compute what tensor=1 computes, and the compiled step must not re-gather the fused
matrices or their activations over `tensor` (a contiguous split of a flat [d, 3d] kernel would
give one device q and the other v, and every layer would all-gather them back). All-gathers are
read from the optimized HLO the way `aomni-aot` reads it.
"""

import dataclasses

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from aomni_jax import parallel
from aomni_jax.cli.aot import all_gather_shapes
from aomni_jax.train import features, state as state_lib, step as step_lib
from tests.train.test_step import BATCH, _batch, _config

# Widths chosen to be unlike any other dimension of the step: d = 128 (4 heads of 32).
EMBED, HEADS, HEAD_DIM = 128, 4, 32


def _step(tensor: int):
  config = _config((1, 4, tensor))
  config = dataclasses.replace(config, model=dataclasses.replace(
      config.model, sample_size=16384, dit=dataclasses.replace(
          config.model.dit, embed_dim=EMBED, num_heads=HEADS, depth=1)))
  mesh = parallel.make_mesh(config.mesh, jax.devices()[:4 * tensor])
  spec = state_lib.make_state_spec(config, mesh)
  train_step = step_lib.build_train_step(config, mesh, features.step_batch_shapes(config, BATCH),
                                         spec)
  compiled = train_step.fn.lower(spec.abstract, step_lib.abstract_batch(train_step),
                                 step_lib.abstract_key(train_step)).compile()
  batch = parallel.shard_batch(_batch(config), train_step.batch_shardings)
  state, metrics = compiled(state_lib.init_state(config, spec), batch, jax.random.PRNGKey(3))
  return config, state, jax.device_get(metrics), compiled.as_text()


@pytest.fixture(scope="module")
def runs():
  return _step(1), _step(2)


def test_tensor_2_equals_tensor_1(runs):
  (_, state_1, metrics_1, _), (_, state_2, metrics_2, _) = runs
  np.testing.assert_allclose(metrics_2["loss"], metrics_1["loss"], rtol=2e-5)
  for name in ("grad_norm", "grad_norm_dit", "grad_norm_heads"):
    np.testing.assert_allclose(metrics_2[name], metrics_1[name], rtol=1e-3, err_msg=name)
  blocks = state_2.params["dit"]["blocks"]
  # Each part of each fused kernel is split over its heads / columns, never across parts.
  assert blocks["self_attn"]["qkv"]["kernel"].sharding.spec == P(None, "fsdp", None, "tensor")
  assert blocks["cross_attn"]["kv"]["kernel"].sharding.spec == P(None, "fsdp", None, "tensor")
  assert blocks["ff"]["proj_in"]["kernel"].sharding.spec == P(None, "fsdp", None, "tensor")
  # Adam moves every weight by ~lr whatever its gradient's size (see test_step): a tenth of lr.
  for ours, ref in zip(jax.tree.leaves(jax.device_get(state_2.params)),
                      jax.tree.leaves(jax.device_get(state_1.params)), strict=True):
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_no_all_gather_of_fused_projections_over_tensor(runs):
  (config, _, _, _), (_, _, _, hlo) = runs
  inner = config.model.dit.ff_inner_dim
  gathered = all_gather_shapes(hlo)
  assert gathered, "FSDP gathers weights: the HLO parser found no all-gather at all"

  def whole_fused(shape):
    """A gathered tensor with all heads of a fused part, or the flat [.., 3d] qkv."""
    pairs = set(zip(shape, shape[1:]))
    return shape[-1] == 3 * EMBED or bool(
        {(3, EMBED), (2, EMBED), (2, inner), (HEADS, HEAD_DIM)} & pairs)

  assert [s for s in gathered if whole_fused(s)] == [], gathered
  # The FSDP gathers of the fused kernels keep their tensor split: [d, parts, width / 2].
  assert {(EMBED, 3, EMBED // 2), (EMBED, 2, inner // 2)} <= set(gathered)
