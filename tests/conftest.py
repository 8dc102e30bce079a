"""Test-wide setup: 8 fake CPU devices (sharding tests) and parsed absl flags (grain workers).

Both must happen before JAX initialises its backends, hence at import time of this file.
"""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import flags  # noqa: E402

if not flags.FLAGS.is_parsed():
  flags.FLAGS(sys.argv[:1])

import pathlib  # noqa: E402

import pytest  # noqa: E402

GOLDEN = pathlib.Path(__file__).parent / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> pathlib.Path:
  """The official-module fixtures shipped with the repo (copied from shared/golden)."""
  return GOLDEN
