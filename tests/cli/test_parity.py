"""`aomni-parity`: skips what is not a fixture, fails only on mismatches and unreadable fixtures."""

from __future__ import annotations

import shutil

import numpy as np

from aomni_jax.cli import parity as cli


def test_a_folder_of_fixtures_expands_to_each_fixture(golden_dir):
  fixtures, skipped = cli.find_fixtures([str(golden_dir)])
  assert [f.name for f in fixtures] == ["dit", "mel", "pipeline", "sampler", "sync",
                                        "synchformer", "transcript", "vae"]
  assert skipped == []


def test_the_golden_glob_skips_readme_and_keys_and_passes(golden_dir, capsys):
  """What `aomni-parity tests/golden/*` gives, cut to the fastest fixture."""
  paths = [str(golden_dir / "README.md"), str(golden_dir / "keys"), str(golden_dir / "sync")]
  assert cli.main(paths) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[:2] == [f"skip {paths[0]}: not a fixture directory (no manifest.json)",
                     f"skip {paths[1]}: not a fixture directory (no manifest.json)"]
  assert out[3].startswith("ok   output")
  assert out[-1] == "all cases within tolerance: 1 fixture(s), 1 case(s), 2 path(s) skipped"


def test_a_mismatch_and_an_unreadable_fixture_fail(golden_dir, tmp_path, capsys):
  wrong = tmp_path / "sync_wrong"
  shutil.copytree(golden_dir / "sync", wrong)
  with np.load(wrong / "cases.npz") as npz:
    arrays = dict(npz)
  arrays["output"] = arrays["output"] + 1e-3  # beyond 1e-4 + 1e-4·|ref| (|ref| < 4 here)
  np.savez(wrong / "cases.npz", **arrays)
  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / "manifest.json").write_text("{not json")
  bad_weights = tmp_path / "bad_weights"
  shutil.copytree(golden_dir / "sync", bad_weights)
  (bad_weights / "weights.safetensors").write_bytes(b"not a safetensors file" * 4)
  assert cli.main([str(wrong), str(broken), str(bad_weights)]) == 1
  out = capsys.readouterr().out
  assert "FAIL output" in out
  assert f"FAIL could not read {broken}: JSONDecodeError" in out
  assert f"FAIL could not read {bad_weights}: SafetensorError" in out
  assert out.splitlines()[-1] == "3 failure(s): 3 fixture(s), 1 case(s), 0 path(s) skipped"
