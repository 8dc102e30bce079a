"""The slice table: names, chip counts, hosts and libtpu topology strings."""

import math

import pytest

from aomni_jax.launch.slices import SLICES, SliceError, parse_slice


@pytest.mark.parametrize("name, topology, chips, hosts, accelerator", [
    ("v5p-64", "v5:2x4x4", 32, 8, "v5p-64"),  # v5p names count TensorCores
    ("v5p-128", "v5:4x4x4", 64, 16, "v5p-128"),
    ("v4-32", "v4:2x2x4", 16, 4, "v4-32"),
    ("v4-8", "v4:2x2x1", 4, 1, "v4-8"),
    ("v5e-16", "v5e:4x4", 16, 4, "v5litepod-16"),  # v5e names count chips; gcloud: v5litepod
    ("v5e-8", "v5e:2x4", 8, 1, "v5litepod-8"),
    ("v6e-64", "v6e:8x8", 64, 16, "v6e-64"),
])
def test_known_slices(name, topology, chips, hosts, accelerator):
  tpu = parse_slice(name)
  assert (tpu.topology, tpu.chips, tpu.hosts, tpu.accelerator_type) == (
      topology, chips, hosts, accelerator)


def test_gcloud_alias_and_chip_configs():
  assert parse_slice("v5litepod-16") is parse_slice("v5e-16")
  assert parse_slice("v4-32").generation.chip_config == "megacore_dense"  # one device per chip
  assert parse_slice("v5p-64").generation.chip_config == "megacore"


def test_table_is_consistent():
  for name, tpu in SLICES.items():
    assert tpu.name == name
    assert math.prod(tpu.grid) == tpu.chips
    assert tpu.hosts == 1 or tpu.hosts * 4 == tpu.chips  # multi-host slices: 4 chips per VM


@pytest.mark.parametrize("name, wrap", [
    ("v5p-64", (False, False, False)), ("v5p-128", (True, True, True)),
    ("v4-4096", (True, True, True)), ("v5e-64", (False, False, False)),
    ("v6e-128", (False, True, False)), ("v5e-256", (True, True, False)),
])
def test_torus_wrap(name, wrap):
  assert parse_slice(name).wrap == wrap


@pytest.mark.parametrize("name, message", [
    ("v5p-65", "v5p slices are: v5p-8"),
    ("v9-8", "unknown generation 'v9'"),
    ("v5p64", "not of the form"),
])
def test_bad_names(name, message):
  with pytest.raises(SliceError, match=message):
    parse_slice(name)
