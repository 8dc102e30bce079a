"""Kernels under the mesh: the train step with splash attention (Pallas interpret mode on CPU)
runs under `shard_map` on a data × fsdp × tensor mesh of the 8 fake devices and matches the xla
attention step; `attention="auto"` resolves by the mesh's platform, not the host's."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from aomni_jax import parallel
from aomni_jax.config import MeshConfig
from aomni_jax.layers.attention import resolve_backend, target_platform
from aomni_jax.train import features, state as state_lib, step as step_lib
from tests.train.test_step import BATCH, _batch, _config


def _one_step(attention: str):
  config = _config((2, 2, 2))
  # One block over 64 latent frames keeps the interpreted kernel cheap on CPU.
  config = dataclasses.replace(config, model=dataclasses.replace(
      config.model, sample_size=16384,
      dit=dataclasses.replace(config.model.dit, attention=attention, depth=1)))
  mesh = parallel.make_mesh(config.mesh)
  spec = state_lib.make_state_spec(config, mesh)
  train_step = step_lib.build_train_step(config, mesh, features.step_batch_shapes(config, BATCH),
                                         spec)
  batch = parallel.shard_batch(_batch(config), train_step.batch_shardings)
  lowered = train_step.fn.lower(spec.abstract, step_lib.abstract_batch(train_step),
                                step_lib.abstract_key(train_step))
  _, metrics = lowered.compile()(state_lib.init_state(config, spec), batch,
                                 jax.random.PRNGKey(3))
  return jax.device_get(metrics), lowered.as_text()


def test_splash_train_step_runs_under_shard_map_and_matches_xla():
  splash, splash_text = _one_step("splash")
  xla, xla_text = _one_step("xla")
  # The kernel is wrapped in shard_map (a manual computation in the lowered module) only
  # because the step traces under its mesh; xla attention is partitioned by GSPMD instead.
  assert "manual_computation" in splash_text and "manual_computation" not in xla_text
  # Same math, different summation order in the kernel's online softmax (fp32).
  np.testing.assert_allclose(splash["loss"], xla["loss"], rtol=1e-5)
  for name in ("grad_norm", "grad_norm_dit", "grad_norm_heads"):
    np.testing.assert_allclose(splash[name], xla[name], rtol=1e-3, err_msg=name)


def test_auto_attention_follows_the_mesh_platform():
  from jax._src.mesh import AbstractDevice  # pylint: disable=g-import-not-at-top
  assert (target_platform(), resolve_backend("auto", jnp.bfloat16)) == ("cpu", "xla")
  mesh = parallel.make_mesh(MeshConfig(data=2, fsdp=-1))
  with parallel.mesh_context(mesh):
    assert jax.sharding.get_abstract_mesh() == mesh.abstract_mesh
    assert jax.jit(lambda x: x + (target_platform() == "cpu"))(1) == 2  # seen while tracing
  # What an AOT compile for a TPU slice on this CPU host traces under: TPU devices, CPU backend.
  tpu = mesh.abstract_mesh.update(abstract_device=AbstractDevice("TPU v5", None, "tpu"))
  with jax.sharding.use_abstract_mesh(tpu):
    assert (target_platform(), resolve_backend("auto", jnp.bfloat16)) == ("tpu", "splash")
  with parallel.mesh_context(None):
    assert jax.sharding.get_abstract_mesh().empty
