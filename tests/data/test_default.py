"""The embedded default dataset, built from the real Debian sources (downloads ≈85 MB once;
needs `apt-get update` to have run). Also checks the GCompris (Qt bundle) extraction."""

import shutil

import pytest

from aomni_jax.data import default
from aomni_jax.data import records
from aomni_jax.data import templates

pytestmark = pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (Debian)")


@pytest.fixture(scope="module")
def default_dir(tmp_path_factory):
  return default.ensure_default_dataset(str(tmp_path_factory.mktemp("default")), workers=2,
                                        progress=False)


def test_default_covers_every_task_family_with_licences(default_dir):
  manifest = records.Manifest.load(default_dir)
  # Debian ships sounds, not videos: V2A/V2M examples come only from a table with a video column.
  assert set(manifest.per_task) == set(templates.TASKS) - set(templates.VIDEO_TASKS)
  assert 150 <= manifest.examples <= 400
  assert sum(manifest.licences.values()) > 0 and "GPL-3+" in manifest.licences  # GCompris
  assert {"dog", "sheep", "rain"} & set(manifest.per_label)  # extracted from the Qt bundles


def test_second_call_reuses_the_cache(default_dir):
  assert default.ensure_default_dataset(default_dir.rsplit("/", 1)[0]) == default_dir
