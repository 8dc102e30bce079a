"""`aomni-train` front-end validation (no training)."""

from aomni_jax.cli import train as cli
from aomni_jax.config import load_config


def test_bad_override_is_reported(capsys):
  assert cli.main(["--config", "configs/tiny.py", "--set", "train.no_such_key=1"]) == 2
  assert "no_such_key" in capsys.readouterr().err


def test_missing_dataset_is_reported(tmp_path, capsys):
  code = cli.main(["--config", "configs/tiny.py", "--workdir", str(tmp_path / "run"), "--set",
                   f"data.root={tmp_path}"])
  assert code == 2
  assert "manifest.json" in capsys.readouterr().err


def test_workdir_comes_from_the_flag_then_the_launcher_environment_then_the_config(monkeypatch):
  config = load_config("configs/tiny.py")
  monkeypatch.setenv("AOMNI_WORKDIR", "gs://bucket/runs/r1")
  assert cli.choose_workdir("w", config) == ("w", "--workdir")
  assert cli.choose_workdir(None, config) == ("gs://bucket/runs/r1", "$AOMNI_WORKDIR")
  monkeypatch.delenv("AOMNI_WORKDIR")
  assert cli.choose_workdir(None, config) == (config.train.workdir, "train.workdir")
