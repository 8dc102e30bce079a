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


@pytest.fixture
def fake_gcs(monkeypatch):
  """`gs://` served by an empty in-memory bucket (tests/gcs_bucket.py) for one test."""
  from tests import gcs_bucket  # pylint: disable=g-import-not-at-top  (gcsfs for these tests only)
  yield from gcs_bucket.installed(monkeypatch)
