"""Dataset files in a local folder or a bucket (`gs://b/data`): the few operations the data side
needs, one implementation for both.

Reading goes through `etils.epath` (the JSON manifest, the count sidecars, iterator states) or,
for the ArrayRecord shards, straight to array_record's C++ reader, which opens `gs://` itself:
shard paths are therefore plain strings, joined here and never made absolute. array_record has
no bucket writer, so a shard is written to a local staging file and then published.
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
  """`directory/name` as a string; a URI keeps its scheme (`os.path.abspath` would not)."""
  return os.fspath(epath.Path(directory) / name)


@contextlib.contextmanager
def staging_dir(directory: str) -> Iterator[str]:
  """A local folder for files that will be `publish`ed into `directory`: the folder itself when
  it is local (so publishing is an atomic rename), a temporary one for a URI (removed on exit,
  published or not)."""
  if is_uri(directory):
    with tempfile.TemporaryDirectory(prefix="aomni-staging-") as staging:
      yield staging
  else:
    yield directory or "."


def staged_path(staging: str, destination: str) -> str:
  """Where `destination` is written before it is published: a hidden name in `staging`, so a
  killed writer never leaves a file under the final name."""
  return os.path.join(staging, _STAGED_PREFIX + os.path.basename(destination))


def publish(staged: str, destination: str) -> None:
  """Moves a finished local file to `destination`: `os.replace` locally, a streamed copy into a
  URI (the object appears whole when the upload is closed)."""
  if not is_uri(destination):
    os.replace(staged, destination)
    return
  with open(staged, "rb") as source, epath.Path(destination).open("wb") as target:
    shutil.copyfileobj(source, target, _COPY_CHUNK)
  os.remove(staged)
