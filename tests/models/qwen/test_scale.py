"""The real 3B thinker: abstract build, parameter count, dtypes and logical-axis sharding."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aomni_jax import parallel
from aomni_jax.config import MeshConfig
from aomni_jax.models.qwen_omni.config import QWEN25_OMNI_3B
from aomni_jax.models.qwen_omni.thinker import Thinker, resolve_layer_index


def _abstract(cfg):
  return nnx.state(nnx.eval_shape(lambda: Thinker(cfg, rngs=nnx.Rngs(0))))


@pytest.mark.parametrize("param_dtype", ["bfloat16", "float32"])
def test_published_parameter_count_and_dtype(param_dtype):
  cfg = dataclasses.replace(QWEN25_OMNI_3B, param_dtype=param_dtype)
  leaves = jax.tree.leaves(_abstract(cfg))
  per_part = {}
  for path, leaf in nnx.to_flat_state(_abstract(cfg)):
    per_part[path[0]] = per_part.get(path[0], 0) + int(np.prod(leaf.shape))
  # qwen_omni_spec §1.3: audio 637.7 M, visual 668.7 M, language model 3085.9 M, lm_head 311.2 M.
  assert round(per_part["audio"] / 1e5) == 6377
  assert round(per_part["visual"] / 1e5) == 6687
  assert round(per_part["text"] / 1e5) == 30859
  assert per_part["lm_head"] == 151936 * 2048
  assert {leaf.dtype for leaf in leaves} == {jnp.dtype(param_dtype)}


def test_shards_over_fsdp_and_tensor():
  mesh_cfg = MeshConfig(data=1, fsdp=4, tensor=2)
  mesh = parallel.make_mesh(mesh_cfg)
  state = _abstract(QWEN25_OMNI_3B)
  shardings = parallel.state_shardings(state, mesh, mesh_cfg.rules)
  fraction, _ = parallel.replicated_fraction(nnx.to_pure_dict(state), shardings)
  assert fraction < 0.01
  q = shardings["text"]["layers"]["q_kernel"].spec
  assert tuple(q) == (None, "fsdp", "tensor")


def test_layer_index_resolution():
  assert resolve_layer_index(-2, 36) == 35
  assert resolve_layer_index(0, 36) == 0
  with pytest.raises(ValueError, match="outside the 37 hidden states"):
    resolve_layer_index(-38, 36)
