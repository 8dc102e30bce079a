"""`metrics.jsonl`: one JSON row per training step, exactly once after any number of resumes.

A resumed run redoes the steps after its checkpoint, so on restore the file is cut back to the
rows of the steps before the resumed step; the redone steps then append their rows again. Only
process 0 writes. A local file gets each row as it is written (`tail -f` works); an object store
(`gs://`) cannot append, so there the whole file is rewritten at every `flush` (the loop flushes
with each checkpoint, and rows after the last checkpoint would be redone on resume anyway).
"""

from __future__ import annotations

import json
from typing import IO, Any

from etils import epath

from aomni_jax.train.paths import is_uri


class StepLog:
  """Writes `{"step": n, ...}` rows to a JSON-lines file (local path or URI)."""

  def __init__(self, path: epath.Path, resume_step: int, enabled: bool = True):
    self._path = path
    self._enabled = enabled
    self._rows: list[str] = []
    self._handle: IO[str] | None = None
    if not enabled:
      return
    self._rows = [json.dumps(row) + "\n" for row in self._rows_before(resume_step)]
    path.write_text("".join(self._rows))  # rewritten, not truncated: object stores cannot
    if not is_uri(path):
      self._handle = path.open("a")

  def _rows_before(self, step: int) -> list[dict[str, Any]]:
    if not self._path.exists():
      return []
    rows = []
    for line in self._path.read_text().splitlines():
      try:
        row = json.loads(line)
      except json.JSONDecodeError:  # the torn last line of a killed run
        continue
      if int(row["step"]) < step:
        rows.append(row)
    return rows

  def write(self, row: dict[str, Any]) -> None:
    if not self._enabled:
      return
    line = json.dumps(row) + "\n"
    if self._handle is not None:
      self._handle.write(line)
      self._handle.flush()
    else:
      self._rows.append(line)

  def flush(self) -> None:
    if self._enabled and self._handle is None:
      self._path.write_text("".join(self._rows))

  def close(self) -> None:
    self.flush()
    if self._handle is not None:
      self._handle.close()
      self._handle = None
