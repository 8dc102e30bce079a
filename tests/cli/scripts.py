"""The console scripts as setup.py declares them, and their argparse parsers, for table tests.

Reading setup.py (not a hand-kept list) is what makes a new command part of the README and error
tests the moment it is declared.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import re
from typing import Callable

ROOT = pathlib.Path(__file__).resolve().parents[2]
_ENTRY = re.compile(r'"(aomni-[\w-]+)=([\w.]+):(\w+)"')


def console_scripts() -> dict[str, str]:
  """name → "module:function" of every console script in setup.py."""
  text = (ROOT / "setup.py").read_text(encoding="utf-8")
  return {name: f"{module}:{function}" for name, module, function in _ENTRY.findall(text)}


def entry_point(name: str) -> Callable[..., int]:
  module, function = console_scripts()[name].split(":")
  return getattr(importlib.import_module(module), function)


class _Captured(BaseException):
  """Carries the parser out of `main` (BaseException: no `except Exception` in main stops it)."""

  def __init__(self, parser: argparse.ArgumentParser):
    super().__init__()
    self.parser = parser


def parser_of(name: str, monkeypatch) -> argparse.ArgumentParser:
  """The parser `main` builds, taken at its first parse call, before anything runs."""

  def capture(self, *args, **kwargs):
    raise _Captured(self)

  with monkeypatch.context() as patch:
    patch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    try:
      entry_point(name)([])
    except _Captured as captured:
      return captured.parser
  raise AssertionError(f"{name}: main() never parsed its arguments")


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
  """Subcommand name → parser (empty for a command without subcommands)."""
  for action in parser._actions:  # pylint: disable=protected-access
    if isinstance(action, argparse._SubParsersAction):  # pylint: disable=protected-access
      return dict(action.choices)
  return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
  return set(parser._option_string_actions)  # pylint: disable=protected-access


def all_options(parser: argparse.ArgumentParser) -> set[str]:
  """The options of a parser and of every subcommand below it."""
  found = options(parser)
  for sub in subparsers(parser).values():
    found |= all_options(sub)
  return found
