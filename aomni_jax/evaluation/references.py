"""A reference manifest from a built dataset (`aomni-data build`), e.g. a held-out build.

Each example becomes one manifest row with ground truth written next to it as FLAC: the target
(edit target, or the real recording / speech for t2a, t2m, tts), the edit input and, for remove
and extract, the residual (input minus target: what the edit must leave out). Stems of one
record are summed exactly as the loader sums them, so target + residual = input holds.
"""

from __future__ import annotations

import json

from etils import epath
import numpy as np

from aomni_jax.audio import io as audio_io
from aomni_jax.data import loader
from aomni_jax.data import records
from aomni_jax.data import templates
from aomni_jax.evaluation import items


def export_references(data_dir: str, out_dir: str | epath.Path, tasks: tuple[str, ...] = (),
                      limit_per_task: int | None = None) -> epath.Path:
  """Writes OUT/manifest.jsonl + OUT/audio/*.flac for the chosen tasks; returns the manifest."""
  try:
    manifest = records.Manifest.load(data_dir)
  except FileNotFoundError as error:
    raise items.ItemsError(f"{error}; build one with `aomni-data build`") from error
  out_dir = epath.Path(out_dir)
  (out_dir / "audio").mkdir(parents=True, exist_ok=True)
  source = loader.ExampleSource(manifest.shard_paths(data_dir))
  counts: dict[str, int] = {}
  rows = []
  for index in range(len(source)):
    data, slot, _ = source[index]
    record = records.decode_record(data)
    example = record["examples"][slot]
    task = example["task"]
    if (tasks and task not in tasks) or counts.get(task, 0) == limit_per_task:
      continue
    counts[task] = counts.get(task, 0) + 1
    item_id = f"{record['id']}-{slot}-{task}"
    stems = {name: records.decode_stem(record, name) for name in record["stems"]}
    row = {"id": item_id, "task": task, "prompt": example["instruction"],
           "labels": [example["label"]] if example["label"] else [],
           "transcript": example["transcript"]}
    row["path"] = _write(out_dir, f"{item_id}-target", stems, example["target"], record["rate"])
    if task in templates.EDIT_TASKS:
      row["input"] = _write(out_dir, f"{item_id}-input", stems, example["input"], record["rate"])
      residual = [name for name in example["input"] if name not in example["target"]]
      if task in ("remove", "extract") and residual:
        row["residual"] = _write(out_dir, f"{item_id}-residual", stems, residual, record["rate"])
    rows.append(row)
  if not rows:
    raise items.ItemsError(f"{data_dir} has no examples of tasks {tasks or templates.TASKS}")
  path = out_dir / "manifest.jsonl"
  path.write_text("".join(json.dumps(row) + "\n" for row in rows))
  return path


def _write(out_dir: epath.Path, name: str, stems: dict[str, np.ndarray], names: list[str],
           rate: int) -> str:
  audio = np.sum([stems[n] for n in names], axis=0)
  (out_dir / "audio" / f"{name}.flac").write_bytes(audio_io.encode_audio(audio, rate, "flac24"))
  return f"audio/{name}.flac"
