"""One error convention for every console script.

Expected failures (a bad config or flag, a missing or unreadable file, a missing extra, a bad
checkpoint) print one line `aomni-X: <what is wrong and what to do>` on stderr and exit 2.
Anything else is a bug and keeps its traceback. Library code raises `UserError` (or one of the
library's own error types listed in `EXPECTED`) with a message that names the input and the fix;
the console entry point is wrapped with `console("aomni-X")`.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable

EXIT_USER_ERROR = 2


class UserError(Exception):
  """An expected failure whose message is the whole story (one line, names the fix)."""


def _expected() -> tuple[type[BaseException], ...]:
  # Imported lazily: a console script's error path must not import JAX.
  from aomni_jax.config import ConfigError
  from aomni_jax.conversion.common import ConversionError
  return (UserError, ConfigError, ConversionError)


def message(error: BaseException) -> str:
  """The error's text (a conversion report may span lines: it lists every problem at once)."""
  return str(error).strip() or type(error).__name__


def console(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
  """Wraps `main(argv) -> int`: expected errors become `prog: message` and exit code 2."""

  def wrap(main: Callable[..., int]) -> Callable[..., int]:

    @functools.wraps(main)
    def run(*args, **kwargs) -> int:
      try:
        return main(*args, **kwargs)
      except _expected() as error:
        print(f"{prog}: {message(error)}", file=sys.stderr)
        return EXIT_USER_ERROR

    return run

  return wrap
