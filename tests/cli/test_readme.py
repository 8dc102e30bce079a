"""The README's commands run as written, and every command's --help tells the truth.

Table-driven from setup.py's console_scripts and README.md: a command added to both is covered
without touching this file. Fenced commands (```bash blocks) must parse with the real parser; the
usage spans of the command table (`aomni-x ... [--flag v]`) must name existing subcommands and
flags; every `--flag` the prose of a --help page (its description) mentions must exist.
"""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from tests.cli.scripts import (ROOT, all_options, console_scripts, entry_point, options,
                               parser_of, subparsers)

README = (ROOT / "README.md").read_text(encoding="utf-8")
_FENCE = re.compile(r"^```(?:bash|sh|shell)\n(.*?)^```", re.M | re.S)
_ANY_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_COMMAND = re.compile(r"^aomni-[a-z][a-z-]*$")
_FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
_OTHER_PROGRAMS = ("tensorboard", "gcloud", "pip", "python", "pytest", "apt-get", "git")


def fenced_commands(text: str) -> list[list[str]]:
  """argv of every shell command in fenced blocks (continuations joined, `&&` `;` `|` split)."""
  commands = []
  for block in _FENCE.findall(text):
    for line in block.replace("\\\n", " ").splitlines():
      line = line.split(" # ")[0].strip()
      if not line or line.startswith("#"):
        continue
      commands += [shlex.split(part) for part in re.split(r"&&|;|\|", line) if part.strip()]
  return commands


def usage_spans(text: str) -> list[list[str]]:
  """Tokens of every inline `aomni-...` span outside fences ("a / b" read as one token "a/b")."""
  prose = _ANY_FENCE.sub("", text)
  spans = [re.sub(r"\s*/\s*", "/", s) for s in re.findall(r"`(aomni-[^`]*)`", prose)]
  return [span.split() for span in spans if _COMMAND.match(span.split()[0])]


FENCED = [argv for argv in fenced_commands(README) if argv]
AOMNI_FENCED = [argv for argv in FENCED if _COMMAND.match(argv[0])]
SPANS = usage_spans(README)


def usage_problems(tokens: list[str], parser: argparse.ArgumentParser) -> list[str]:
  """Unknown subcommands and flags in `aomni-x sub --flag value [--other v] ...` (values ignored),
  and required options a full usage line leaves out."""
  problems, current, value_next = [], [parser], False
  for index, token in enumerate(tokens):
    token = token.strip("[]")
    if token == "--":  # what follows is another command's line (e.g. the job aomni-launch runs)
      tokens = tokens[:index]
      break
    if value_next:  # the value of the flag before it, not a subcommand
      value_next = False
      continue
    if token.startswith("--"):
      flag = token.split("=")[0]
      actions = [p._option_string_actions[flag] for p in current  # pylint: disable=protected-access
                 if flag in options(p)]
      if not actions:
        problems.append(f"unknown flag {flag}")
      value_next = "=" not in token and any(a.nargs != 0 for a in actions)
      continue
    choices = {k: v for p in current for k, v in subparsers(p).items()}
    names = [n for n in token.split("/") if n]
    if choices and names and not names[0].startswith((".", "{")):
      unknown = [n for n in names if n not in choices]
      if unknown:
        problems.append(f"unknown subcommand {'/'.join(unknown)}; known: {sorted(choices)}")
        break
      current = [choices[n] for n in names]
  # A full usage line (one command, not a bare mention, no "...") names every required option.
  if tokens and len(current) == 1 and "..." not in tokens:
    given = {t.strip("[]").split("=")[0] for t in tokens}
    problems += [f"required {a.option_strings[0]} missing" for a in current[0]._actions
                 if a.required and a.option_strings and not given & set(a.option_strings)]
  return problems


def help_problems(text: str, name: str, monkeypatch) -> list[str]:
  """`--flags` a help text names that its command lacks; after `aomni-y` or another program
  (`tensorboard --logdir`) on a line, flags belong to that one (only aomni ones are checked)."""
  problems = []
  for line in text.splitlines():
    parts = re.split(rf"\b(aomni-[a-z][a-z-]*|{'|'.join(_OTHER_PROGRAMS)})\b", line)
    owner = name
    for index, part in enumerate(parts):
      if index % 2:
        owner = part
        if owner.startswith("aomni-") and owner not in console_scripts():
          problems.append(f"mentions {owner}, which setup.py does not declare")
        continue
      if owner not in console_scripts():
        continue
      known = all_options(parser_of(owner, monkeypatch))
      problems += [f"{flag} ({owner} has no such flag): {line.strip()}"
                   for flag in _FLAG.findall(part) if flag not in known]
  return problems


def test_the_readme_documents_exactly_the_console_scripts():
  mentioned = {argv[0] for argv in AOMNI_FENCED} | {tokens[0] for tokens in SPANS}
  declared = set(console_scripts())
  assert not declared - mentioned, f"add {sorted(declared - mentioned)} to the README's table"
  assert not mentioned - declared, f"README shows {sorted(mentioned - declared)}; not in setup.py"


def _parser_tree(name: str, monkeypatch) -> list[tuple[list[str], argparse.ArgumentParser]]:
  """(subcommand path, parser) of the command and each of its subcommands, recursively."""
  tree, stack = [], [([], parser_of(name, monkeypatch))]
  while stack:
    path, parser = stack.pop()
    tree.append((path, parser))
    stack += [([*path, sub], p) for sub, p in subparsers(parser).items()]
  return tree


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_every_help_page_prints_and_names_only_real_flags(name, monkeypatch, capsys):
  problems = []
  for path, parser in _parser_tree(name, monkeypatch):
    with pytest.raises(SystemExit) as exit_:
      entry_point(name)([*path, "--help"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("usage: "), path
    problems += [f"{name} {' '.join(path)} --help: {p}"
                 for p in help_problems(parser.description or "", name, monkeypatch)]
  assert not problems


@pytest.mark.parametrize("argv", FENCED, ids=[" ".join(a)[:60] for a in FENCED])
def test_fenced_command_runs_as_written(argv, monkeypatch, capsys):
  """aomni commands parse with their real parser (a wrapped command too); scripts exist."""
  for token in argv:
    if token.endswith((".py", ".txt", ".sh")) or token.startswith(("configs/", "benchmarks/")):
      assert (ROOT / token.split(":")[0]).exists(), f"{token} does not exist"
  while argv and _COMMAND.match(argv[0]):
    assert argv[0] in console_scripts(), f"{argv[0]} is not a console script in setup.py"
    parser = parser_of(argv[0], monkeypatch)
    try:
      parser.parse_args(argv[1:])
    except SystemExit:
      pytest.fail(f"{' '.join(argv)}: {capsys.readouterr().err.strip()}")
    inner = argv.index("--") + 1 if "--" in argv else len(argv)  # `launch ... -- aomni-train ...`
    argv = argv[inner:]


@pytest.mark.parametrize("tokens", SPANS, ids=[" ".join(t)[:60] for t in SPANS])
def test_usage_span_names_real_subcommands_and_flags(tokens, monkeypatch):
  assert not usage_problems(tokens[1:], parser_of(tokens[0], monkeypatch))
