"""One error convention for every console script.

Expected failures (a bad config or flag, a missing or unreadable file, a missing extra, a bad
checkpoint) print one line `aomni-X: <what is wrong and what to do>` on stderr and exit 2.
Anything else is a bug and keeps its traceback. Library code raises `UserError` (or one of the
library's own error types listed in `_expected`) with a message that names the input and the fix;
the console entry point is wrapped with `console("aomni-X")` and builds its flags with this
module's `ArgumentParser`, so that a bad flag reads the same as any other expected failure.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable, NoReturn

from aomni_jax.cli import logs

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class UserError(Exception):
  """An expected failure whose message is the whole story (one line, names the fix)."""


class ArgumentParser(argparse.ArgumentParser):
  """argparse whose usage errors are one line, `prog: what is wrong (see prog --help)`, exit 2.

  Subparsers inherit the class, so `aomni-data build` errors name the subcommand.
  """

  def error(self, message: str) -> NoReturn:
    self.exit(EXIT_USER_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _expected() -> tuple[type[BaseException], ...]:
  # Imported lazily: a console script's error path must not import JAX.
  from aomni_jax.audio.io import AudioReadError
  from aomni_jax.config import ConfigError
  from aomni_jax.conversion.common import ConversionError
  from aomni_jax.data.debian import PackageFetchError
  return (UserError, ConfigError, ConversionError, AudioReadError, PackageFetchError)


def message(error: BaseException) -> str:
  """The error's text (a conversion report may span lines: it lists every problem at once)."""
  return str(error).strip() or type(error).__name__


def console(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
  """Wraps `main(argv) -> int`: expected errors become `prog: message` and exit code 2.

  Ctrl-C outside a command's own handling prints `prog: interrupted` and exits 130 instead of a
  KeyboardInterrupt traceback. Logging starts quiet (`logs.configure()`: our INFO, the libraries'
  warnings) before `main` runs; a command with `--verbose` calls `logs.configure(True)` itself.
  """

  def wrap(main: Callable[..., int]) -> Callable[..., int]:

    @functools.wraps(main)
    def run(*args, **kwargs) -> int:
      logs.configure()
      try:
        return main(*args, **kwargs)
      except _expected() as error:
        print(f"{prog}: {message(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
      except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED

    return run

  return wrap
