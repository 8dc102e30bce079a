"""`gs://` paths reach Google Cloud Storage through gcsfs, not the local disk.

etils.epath (and with it Orbax and our path handling) sends `gs://` to fsspec, which imports
`gcsfs.GCSFileSystem`; without the `[gcs]` extra that import fails ("Please install gcsfs").
The bucket itself is an in-memory file system registered in gcsfs's place (no network here;
the `fake_gcs` fixture of tests/conftest.py).
"""

import os

import fsspec
import gcsfs
from etils import epath


def test_fsspec_resolves_gs_to_gcsfs():
  assert fsspec.get_filesystem_class("gs") is gcsfs.GCSFileSystem
  assert fsspec.get_filesystem_class("gcs") is gcsfs.GCSFileSystem


def test_epath_writes_gs_uris_to_the_bucket_not_the_disk(fake_gcs, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  run = epath.Path("gs://my-bucket/aomni/r1")
  (run / "checkpoints").mkdir(parents=True, exist_ok=True)
  (run / "metrics.jsonl").write_text('{"step": 1}\n')
  assert os.fspath(run) == "gs://my-bucket/aomni/r1"
  assert fake_gcs.store["/my-bucket/aomni/r1/metrics.jsonl"].getvalue() == b'{"step": 1}\n'
  assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n'
  assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "metrics.jsonl"]
  assert list(tmp_path.iterdir()) == []  # nothing like ./gs:/my-bucket on the local disk
