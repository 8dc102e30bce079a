"""Mesh construction, logical→mesh resolution, scanned-layer sharding and the replication guard
(8 fake CPU devices from tests/conftest.py)."""


import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from aomni_jax import parallel
from aomni_jax.config import ConfigError, MeshConfig, load_config
from aomni_jax.models.dit import DiffusionTransformer

RULES = MeshConfig().rules


def _mesh(data, fsdp, tensor):
  return parallel.make_mesh(MeshConfig(data=data, fsdp=fsdp, tensor=tensor))


def test_mesh_fills_the_unknown_axis():
  assert parallel.mesh_shape(MeshConfig(data=2, fsdp=-1, tensor=2), 8) == (2, 2, 2)
  assert parallel.mesh_shape(MeshConfig(data=-1, fsdp=1, tensor=1), 8) == (8, 1, 1)
  assert dict(_mesh(1, -1, 2).shape) == {"data": 1, "fsdp": 4, "tensor": 2}


@pytest.mark.parametrize("cfg", [MeshConfig(data=3, fsdp=-1), MeshConfig(data=-1, fsdp=-1),
                                 MeshConfig(data=2, fsdp=2, tensor=1), MeshConfig(fsdp=0)])
def test_bad_mesh_is_rejected(cfg):
  with pytest.raises(ConfigError, match="mesh"):
    parallel.mesh_shape(cfg, 8)


def test_logical_rules_resolve_with_divisibility_and_single_use():
  mesh = _mesh(2, 2, 2)
  assert parallel.logical_to_spec(("embed", "mlp"), (64, 256), mesh, RULES) == P("fsdp", "tensor")
  # A mesh axis that does not divide the dimension is dropped for it.
  assert parallel.logical_to_spec(("embed", "mlp"), (63, 256), mesh, RULES) == P(None, "tensor")
  # A mesh axis is used once per array: the second `embed` stays unsharded.
  assert parallel.logical_to_spec(("embed", "embed"), (64, 64), mesh, RULES) == P("fsdp", None)
  # The batch rule uses two mesh axes at once.
  assert parallel.logical_to_spec(("batch", None), (8, 3), mesh, RULES) == P(("data", "fsdp"),
                                                                           None)
  # Unknown names are replicated (with a warning), not an error deep inside jit.
  assert parallel.logical_to_spec(("no_such_axis",), (64,), mesh, RULES) == P(None)


def test_rules_naming_unknown_mesh_axes_fail():
  with pytest.raises(ConfigError, match="unknown mesh axes"):
    parallel.logical_to_spec(("embed",), (64,), _mesh(1, 8, 1), (("embed", "model"),))


def test_scanned_dit_layers_keep_the_layers_axis_unsharded():
  config = load_config("configs/tiny.py")
  abstract = nnx.eval_shape(lambda: DiffusionTransformer(config.model.dit, rngs=nnx.Rngs(0)))
  _, params, _ = nnx.split(abstract, nnx.Param, ...)
  shardings = parallel.state_shardings(params, _mesh(1, 8, 1), RULES)
  qkv = shardings["blocks"]["self_attn"]["qkv"]["kernel"]
  assert params["blocks"]["self_attn"]["qkv"]["kernel"].shape[0] == config.model.dit.depth
  assert qkv.spec == P(None, "fsdp", None, None)


def test_replication_check():
  mesh = _mesh(1, 8, 1)
  shapes = {"big": jax.ShapeDtypeStruct((1024, 64), np.float32),
            "norm": jax.ShapeDtypeStruct((64,), np.float32)}
  sharded = {"big": parallel.batch_sharding(mesh, RULES, 2, 1024),  # split over data × fsdp
             "norm": jax.sharding.NamedSharding(mesh, P())}
  fraction = parallel.check_replication(shapes, sharded, tolerance=0.02)
  assert fraction == pytest.approx(64 / (1024 * 64 + 64))
  replicated = dict(sharded, big=jax.sharding.NamedSharding(mesh, P()))
  with pytest.raises(ConfigError, match=r"100.0% of parameter bytes are replicated.*\['big'\]"):
    parallel.check_replication(shapes, replicated, tolerance=0.02)


def test_full_size_state_is_sufficiently_sharded():
  """The official 3 B config on 8 devices (abstract only): ≤ 2 % of parameter bytes replicated."""
  from aomni_jax.train import state as state_lib
  config = load_config("configs/audio_omni.py")
  spec = state_lib.make_state_spec(config, _mesh(1, 8, 1))
  fraction = parallel.check_replication(spec.abstract.params, spec.shardings.params,
                                        config.mesh.replication_tolerance)
  assert fraction < 0.02
  assert state_lib.parameter_count(spec.abstract.params["dit"]) == 3_037_311_104  # official_spec §8


def test_multislice_mesh_needs_the_data_axis_to_span_the_slices():
  with pytest.raises(ConfigError, match="multiple of the 2 slices"):
    parallel.make_mesh(MeshConfig(data=1, fsdp=-1), jax.devices(), num_slices=2)


def test_num_slices_comes_from_the_environment(monkeypatch):
  monkeypatch.delenv("MEGASCALE_NUM_SLICES", raising=False)
  assert parallel.detected_num_slices() == 1  # CPU devices carry no slice_index
  monkeypatch.setenv("MEGASCALE_NUM_SLICES", "2")
  assert parallel.detected_num_slices() == 2
  mesh = parallel.make_mesh(MeshConfig(data=2, fsdp=-1), num_slices=parallel.detected_num_slices())
  # Devices without a slice_index form slices of consecutive devices: data spans the slices.
  assert [d.id for d in mesh.devices[0].flat] == [0, 1, 2, 3]
  assert [d.id for d in mesh.devices[1].flat] == [4, 5, 6, 7]
  monkeypatch.setenv("MEGASCALE_NUM_SLICES", "two")
  with pytest.raises(ConfigError, match="MEGASCALE_NUM_SLICES"):
    parallel.detected_num_slices()


def test_indivisible_batch_is_one_line_naming_the_mesh():
  mesh = _mesh(2, 2, 2)
  assert parallel.batch_sharding(mesh, RULES, 2, 8).spec == P(("data", "fsdp"), None)
  with pytest.raises(ConfigError) as err:
    parallel.batch_sharding(mesh, RULES, 2, 6)
  message = str(err.value)
  assert "\n" not in message
  assert "batch of 6" in message and "'data': 2, 'fsdp': 2, 'tensor': 2" in message
  assert "multiple of 4" in message
