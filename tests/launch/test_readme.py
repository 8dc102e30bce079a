"""Every `launch/...` command in launch/README.md is valid: each one dry-runs with exit 0.

The README's own `export` line supplies the TPU target, as it does for a reader; command-local
assignments (`NNODES=2 ... launch/gpu/run.sh`) apply to their command.
"""

import pathlib
import re
import shlex

import pytest

from aomni_jax.cli import launch as cli

README = pathlib.Path(cli.PROJECT_ROOT) / "launch" / "README.md"
_ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=\S*")


def _shell_lines() -> list[str]:
  """The README's bash lines, continuations joined, comments dropped, `&&` chains split."""
  lines = []
  for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
    for line in block.replace("\\\n", " ").splitlines():
      words = shlex.split(line, comments=True)
      while words:
        cut = words.index("&&") if "&&" in words else len(words)
        lines.append(words[:cut])
        words = words[cut + 1:]
  return [words for words in lines if words]


def _exports() -> dict[str, str]:
  exports = {}
  for words in _shell_lines():
    if words[0] == "export":
      exports.update(word.split("=", 1) for word in words[1:])
  return exports


def _launch_commands() -> list[list[str]]:
  commands = []
  for words in _shell_lines():
    program = next((w for w in words if not _ASSIGNMENT.fullmatch(w)), "")
    if program.startswith("launch/"):
      commands.append(words)
  return commands


def test_the_readme_has_the_whole_path():
  scripts = {next(w for w in words if w.startswith("launch/")) for words in _launch_commands()}
  assert scripts >= {f"launch/tpu/{action}.sh" for action in cli.TPU_ACTIONS} | {
      "launch/gpu/run.sh"}


@pytest.mark.parametrize("words", _launch_commands(), ids=shlex.join)
def test_every_launch_command_dry_runs(words, monkeypatch, capsys):
  for key in ("AOMNI_TPU_QUEUED", "AOMNI_TPU_NUM_SLICES", "NNODES", "NODE_RANK",
              "JAX_COORDINATOR_ADDRESS"):
    monkeypatch.delenv(key, raising=False)
  for key, value in _exports().items():
    monkeypatch.setenv(key, value)
  monkeypatch.setenv("GPUS_PER_NODE", "8")  # nvidia-smi's answer on an 8-GPU node
  while _ASSIGNMENT.fullmatch(words[0]):
    key, value = words[0].split("=", 1)
    monkeypatch.setenv(key, value)
    words = words[1:]
  script, args = pathlib.PurePath(words[0]), words[1:]
  platform = script.parent.name
  argv = [platform, "--dry-run", *args] if platform == "gpu" else [
      platform, script.stem, "--dry-run", *args]
  assert cli.main(argv) == 0, capsys.readouterr().err
  assert capsys.readouterr().out.strip()
