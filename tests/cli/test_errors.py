"""Every console script turns expected failures into one line `aomni-X: ...` and exit status 2.

One row per (script, bad argv): the script's `main` from setup.py runs in-process and must return
(or exit with) 2, print nothing on stdout and exactly one line on stderr that starts with its name
and names the problem; a traceback would escape as an exception and fail the row. `{tmp}` in an
argv is a folder of bad inputs (see `bad_inputs`). Other branches add rows for their scripts.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from aomni_jax.cli.errors import console
from tests.cli.scripts import ROOT, console_scripts, entry_point

MODEL = ["--model", "{tmp}/model", "--question", "what is it?"]

ROWS = [
    # aomni-sample
    ("aomni-sample", ["--config", "nope.py"], "config file 'nope.py' does not exist"),
    ("aomni-sample", ["--config", "README.md"], "expected a .py file with get_config()"),
    ("aomni-sample", ["--config", "{tmp}/syntax.py"], "syntax.py:2: syntax error"),
    ("aomni-sample", ["--set", "dit.no_such_key=1"], "unknown config key 'no_such_key'"),
    ("aomni-sample", ["--set", "dit.depth"], "'dit.depth' is not of the form key=value"),
    ("aomni-sample", ["--batch", "0"], "--batch must be >= 1"),
    ("aomni-sample", ["--batch", "two"], "argument --batch: invalid int value: 'two'"),
    ("aomni-sample", ["--checkpoint", "x"], "unrecognized arguments: --checkpoint x"),
    # aomni-understand: the model folder is checked first, then inputs, before weights are read
    ("aomni-understand", ["--question", "q"], "the following arguments are required: --model"),
    ("aomni-understand", ["--model", "/nonexistent", "--question", "q"], "is not a directory"),
    ("aomni-understand", ["--model", "{tmp}", "--question", "q"], "has no config.json"),
    ("aomni-understand", [*MODEL, "--audio", "{tmp}/missing.wav"],
     "missing.wav' does not exist"),
    ("aomni-understand", [*MODEL, "--audio", "{tmp}/empty.wav"], "empty.wav' holds no audio"),
    ("aomni-understand", [*MODEL, "--audio", "{tmp}/corrupt.wav"],
     "corrupt.wav' is not readable audio"),
    ("aomni-understand", [*MODEL, "--audio", "{tmp}"], "{tmp}' is a directory"),
    ("aomni-understand", [*MODEL, "--video", "{tmp}/missing.mp4"], "missing.mp4' does not exist"),
    ("aomni-understand", [*MODEL, "--video", "{tmp}/corrupt.mp4"],
     "corrupt.mp4' is not readable video"),
    ("aomni-understand", [*MODEL, "--video", "{tmp}/tone.wav"], "has no video stream"),
    ("aomni-understand", ["--model", "{tmp}/model", "--question", " "], "--question is empty"),
    ("aomni-understand", [*MODEL, "--video-fps", "0"], "--video-fps must be > 0"),
    # aomni-parity
    ("aomni-parity", [], "the following arguments are required: PATH"),
    ("aomni-parity", ["{tmp}/nope"], "nope does not exist"),
    ("aomni-parity", ["{tmp}/model", "README.md"], "no fixture among"),
    # aomni-data
    ("aomni-data", [], "the following arguments are required: command"),
    ("aomni-data", ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("aomni-data", ["build"], "aomni-data build: the following arguments are required: --out"),
    ("aomni-data", ["build", "--out", "{tmp}/out", "--table", "{tmp}/nope.csv"],
     "--table {tmp}/nope.csv is not a file"),
    ("aomni-data", ["build", "--out", "{tmp}/out", "--table", "{tmp}/bad.csv"],
     "bad.csv:2: every row needs 'path' and 'label'"),
    ("aomni-data", ["build", "--out", "{tmp}/out", "--table", "{tmp}/bad.csv", "--stems", "{tmp}"],
     "--table and --stems are two different sources"),
    ("aomni-data", ["build", "--out", "{tmp}/out", "--stems", "{tmp}"], "has no labels.csv"),
    ("aomni-data", ["build", "--out", "{tmp}/out", "--shards", "0"], "--shards must be >= 1"),
    ("aomni-data", ["inspect", "--data", "{tmp}"], "has no manifest.json"),
    ("aomni-data", ["precompute"], "the following arguments are required: --data, --out"),
    # aomni-convert: inputs are checked before anything is read or written
    ("aomni-convert", ["{tmp}/nope.ckpt", "{tmp}/out"], "nope.ckpt' does not exist"),
    ("aomni-convert", ["gs://bucket/model.ckpt", "{tmp}/out"], "memory-mapped from local disk"),
    ("aomni-convert", ["{tmp}/tone.wav", "{tmp}/out", "--synchformer", "gs://b/s.pth"],
     "memory-mapped from local disk"),
    ("aomni-convert", ["{tmp}/tone.wav", "{tmp}/out", "--synchformer", "{tmp}/nope.pth"],
     "nope.pth' does not exist"),
    # aomni-train (the wrapper; the loop's own errors are tested in tests/train)
    ("aomni-train", [], "the following arguments are required: --config"),
    ("aomni-train", ["--config", "nope.py"], "config file 'nope.py' does not exist"),
    ("aomni-train", ["--config", "{tmp}/not_json.json"], "not_json.json' is not valid JSON"),
    ("aomni-train", ["--config", "{tmp}/list.json"], "expected a JSON object"),
    ("aomni-train", ["--config", "configs/tiny.py", "--set", "train.no_such_key=1"],
     "unknown config key 'no_such_key' in TrainConfig"),
    # aomni-launch (every TPU validation error is in tests/launch/test_tpu.py)
    ("aomni-launch", ["tpu", "launch"], "invalid choice: 'launch'"),
    ("aomni-launch", ["tpu", "check", "--name", "a", "--zone", "us-east5-a", "--slice", "v5p-63",
                      "--dry-run"], "TPU slice 'v5p-63' does not exist"),
    ("aomni-launch", ["tpu", "logs", "--name", "a", "--zone", "us-east5-a", "--slice", "v4-32",
                      "--run-name", "r", "--worker", "2-9", "--dry-run"], "[9] out of range"),
    ("aomni-launch", ["gpu", "--nnodes", "2", "--gpus-per-node", "8", "--", "x"],
     "need a coordinator"),
]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> str:
  """A folder of things that are not what a command wants."""
  tmp = tmp_path_factory.mktemp("bad_inputs")
  (tmp / "syntax.py").write_text("def get_config(arg):\n  return (\n")
  (tmp / "not_json.json").write_text("{not json")
  (tmp / "list.json").write_text("[1, 2]")
  (tmp / "empty.wav").write_bytes(b"")
  (tmp / "corrupt.wav").write_bytes(b"RIFF....WAVEnot really audio" * 8)
  (tmp / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 but no boxes" * 8)
  soundfile.write(tmp / "tone.wav", np.sin(np.arange(1600) / 5.0).astype(np.float32), 16000)
  (tmp / "bad.csv").write_text("path,label\nclip.wav,\n")
  (tmp / "model").mkdir()
  (tmp / "model" / "config.json").write_text("{}")
  return str(tmp)


def _exit_code(main, argv) -> int:
  try:
    return main(argv)
  except SystemExit as exit_:  # argparse's own errors
    return exit_.code


@pytest.mark.parametrize("script, argv, expected", ROWS,
                         ids=[f"{s} {' '.join(a)}" for s, a, _ in ROWS])
def test_bad_input_is_one_line_and_exit_2(script, argv, expected, bad_inputs, capsys):
  argv = [arg.replace("{tmp}", bad_inputs) for arg in argv]
  assert _exit_code(entry_point(script), argv) == 2
  out, err = capsys.readouterr()
  assert out == ""
  assert err.count("\n") == 1 and err.endswith("\n"), err
  assert err.startswith(script), err  # a subcommand's is "aomni-data build: ..."
  assert expected.replace("{tmp}", bad_inputs) in err, err


def test_every_row_names_a_console_script():
  assert {script for script, _, _ in ROWS} <= set(console_scripts())


def test_the_installed_entry_point_exits_2_with_one_line_and_no_traceback():
  """As a shell sees it: the process exit status, and nothing else on stderr (no library logs)."""
  module, function = console_scripts()["aomni-train"].split(":")
  code = f"import sys; from {module} import {function}; sys.exit({function}())"
  env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  result = subprocess.run([sys.executable, "-c", code, "--config", "configs/tiny.py", "--set",
                           "dit.depth"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
  assert result.returncode == 2
  assert result.stdout == ""
  assert result.stderr == "aomni-train: override 'dit.depth' is not of the form key=value\n"


def test_ctrl_c_is_one_line_and_exit_130_and_a_bug_keeps_its_traceback(capsys):
  @console("aomni-x")
  def interrupted() -> int:
    raise KeyboardInterrupt

  @console("aomni-x")
  def buggy() -> int:
    raise RuntimeError("a bug")

  assert interrupted() == 130
  assert capsys.readouterr().err == "aomni-x: interrupted\n"
  with pytest.raises(RuntimeError, match="a bug"):
    buggy()
