"""A built dataset → reference manifest whose audio is the ground truth the loader would use."""

import json

import numpy as np
import pytest

from aomni_jax.data import records
from aomni_jax.evaluation import items
from aomni_jax.evaluation import references


def test_export_writes_targets_inputs_and_residuals_that_add_up(tiny_dataset, tmp_path):
  manifest = references.export_references(tiny_dataset, tmp_path / "refs", limit_per_task=2)
  rows = [json.loads(line) for line in manifest.read_text().splitlines()]
  tasks = {row["task"] for row in rows}
  assert {"t2a", "add", "remove", "extract"} <= tasks
  assert all(count <= 2 for count in (sum(r["task"] == t for r in rows) for t in tasks))
  parsed = {r.id: r for r in items.read_manifest(manifest)}
  for row in rows:
    reference = parsed[row["id"]]
    assert reference.path.exists() and reference.task == row["task"]
    if row["task"] in ("remove", "extract"):
      target, rate = items.read_mono(reference.path)
      residual, _ = items.read_mono(reference.residual)
      mixture, _ = items.read_mono(reference.input)
      assert rate == records.Manifest.load(tiny_dataset).config["rate"]
      np.testing.assert_allclose(target + residual, mixture, atol=1e-5)  # flac24 rounding


def test_export_refuses_a_task_the_dataset_lacks(tiny_dataset, tmp_path):
  with pytest.raises(items.ItemsError, match="no examples"):
    references.export_references(tiny_dataset, tmp_path / "refs", tasks=("style",))


def test_a_folder_that_is_not_a_dataset_is_a_clear_error(tmp_path):
  with pytest.raises(items.ItemsError, match="aomni-data build"):
    references.export_references(str(tmp_path), tmp_path / "refs")
