"""Paths of a training run: local folders or URIs (`gs://bucket/run`), all through `etils.epath`.

A multi-host run needs one workdir that every host sees, i.e. a bucket; `os.path.abspath` would
turn `gs://b/run` into `<cwd>/gs:/b/run` and `open()` cannot write to it. Everything the loop,
the checkpoints, the metrics and the samples touch is an `epath.Path` built here.
"""

from __future__ import annotations

import os

from etils import epath

URI_SEPARATOR = "://"


def is_uri(path: str | os.PathLike) -> bool:
  return URI_SEPARATOR in os.fspath(path)


def run_path(path: str | os.PathLike) -> epath.Path:
  """`path` as an epath.Path: URIs unchanged, local paths made absolute (so a later change of the
  working directory, e.g. by a launcher, does not move the run)."""
  if is_uri(path):
    return epath.Path(path)
  return epath.Path(path).expanduser().absolute()
