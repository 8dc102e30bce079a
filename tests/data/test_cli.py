"""`aomni-data` commands run end to end on a user table."""

import os

from aomni_jax.cli import data as data_cli
from aomni_jax.data import records


def test_build_from_a_table_then_inspect(clip_folder, tmp_path, capsys):
  out = str(tmp_path / "ds")
  data_cli.main(["build", "--out", out, "--table", clip_folder, "--no-style", "--mixtures", "3",
                 "--singles", "1", "--shards", "2", "--workers", "1"])
  manifest = records.Manifest.load(out)
  assert manifest.per_task["add"] == 3 and os.path.exists(os.path.join(out, "clips.csv"))
  assert "dropped: " in capsys.readouterr().out
  preview = str(tmp_path / "preview")
  data_cli.main(["inspect", "--data", out, "--out", preview, "--examples", "2"])
  written = sorted(os.listdir(preview))
  assert len([f for f in written if f.endswith(".png")]) == 2
  assert len([f for f in written if f.endswith(".wav")]) == 4
  assert os.path.getsize(os.path.join(preview, written[0])) > 1000


def test_missing_dataset_is_a_clean_exit(tmp_path, capsys):
  assert data_cli.main(["inspect", "--data", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert err.startswith("aomni-data: --data ") and "manifest" in err and err.count("\n") == 1
