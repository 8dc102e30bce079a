"""An in-memory Google Cloud Storage for tests: `gs://` paths reach it through fsspec, as they
reach gcsfs in production (etils.epath, Orbax and our path handling all go through fsspec)."""

from typing import Iterator

import fsspec
import gcsfs
from etils import epath
from etils.epath import backend
from fsspec.implementations.memory import MemoryFileSystem


class FakeBucket(MemoryFileSystem):
  """An in-memory GCS: its own store, gcsfs's protocols."""

  protocol = ("gs", "gcs")
  store: dict = {}
  pseudo_dirs = [""]

  @classmethod
  def _strip_protocol(cls, path):
    return "/" + str(path).removeprefix("gs://").removeprefix("gcs://").strip("/")


def installed(monkeypatch) -> Iterator[type[FakeBucket]]:
  """Puts an empty fake bucket in gcsfs's place in fsspec's registry for one test."""
  assert fsspec.get_filesystem_class("gcs") is gcsfs.GCSFileSystem
  monkeypatch.setattr(FakeBucket, "store", {})
  monkeypatch.setattr(epath.gpath, "_is_tf_installed", lambda: False)  # the fsspec route
  for protocol in FakeBucket.protocol:
    fsspec.register_implementation(protocol, FakeBucket, clobber=True)
  backend.fsspec_backend._get_filesystem.cache_clear()
  yield FakeBucket
  for protocol in FakeBucket.protocol:
    fsspec.register_implementation(protocol, gcsfs.GCSFileSystem, clobber=True)
  backend.fsspec_backend._get_filesystem.cache_clear()
  FakeBucket.clear_instance_cache()
