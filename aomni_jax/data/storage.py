"""Dataset files in a local folder or a bucket (`gs://b/data`): the few operations the data side
needs beyond `etils.epath`, one implementation for both.

Small files (manifest, count sidecars, iterator states, clip tables) are read and written with
`epath`. The ArrayRecord shards go to array_record, whose C++ reader opens `gs://` itself: shard
paths are therefore plain strings, joined here and never made absolute. array_record (like
soundfile and matplotlib) writes local files only, so such files are written through
`local_file`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from etils import epath

from aomni_jax.train.paths import is_uri

_STAGED_PREFIX = ".partial-"
_COPY_CHUNK = 64 * 2**20


def join(directory: str, name: str) -> str:
  """`directory/name` as a string: a URI keeps its scheme (`os.path.abspath` would not), and a
  `name` that is itself a URI or an absolute path is returned as it is."""
  if is_uri(name):
    return name
  return os.fspath(epath.Path(directory) / name)


@contextlib.contextmanager
def local_file(destination: str) -> Iterator[str]:
  """A local path to write `destination` through: the file is moved into place when the block
  ends without an error and dropped otherwise, so `destination` never holds a partial file.

  Locally it is a hidden sibling, renamed atomically; for a URI a temporary file, uploaded at the
  end (the object appears whole when the upload closes).
  """
  if is_uri(destination):
    with tempfile.TemporaryDirectory(prefix="aomni-staging-") as folder:
      staged = os.path.join(folder, os.path.basename(destination))
      yield staged
      with open(staged, "rb") as source, epath.Path(destination).open("wb") as target:
        shutil.copyfileobj(source, target, _COPY_CHUNK)
    return
  folder, name = os.path.split(destination)
  staged = os.path.join(folder, _STAGED_PREFIX + name)
  try:
    yield staged
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(staged)
    raise
  os.replace(staged, destination)
