"""`aomni-train` front-end validation (no training)."""

from aomni_jax.cli import train as cli


def test_bad_override_is_reported(capsys):
  assert cli.main(["--config", "configs/tiny.py", "--set", "train.no_such_key=1"]) == 2
  assert "no_such_key" in capsys.readouterr().err


def test_missing_dataset_is_reported(tmp_path, capsys):
  code = cli.main(["--config", "configs/tiny.py", "--workdir", str(tmp_path / "run"), "--set",
                   f"data.root={tmp_path}"])
  assert code == 2
  assert "manifest.json" in capsys.readouterr().err
