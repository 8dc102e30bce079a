"""Console logging shared by every command: our INFO lines by default, library chatter on request.

JAX, Orbax, grain and absl log at INFO freely (a training run printed hundreds of such lines, and
every CPU run "Unable to initialize backend 'tpu': ... Failed to open libtpu.so"); a user wants
our progress and summaries plus everyone's warnings, and the rest only when debugging.
"""

from __future__ import annotations

import argparse
import logging
import sys

import tqdm

PACKAGE_LOGGER = "aomni_jax"
_FORMAT = "%(asctime)s %(name)s: %(message)s"


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--verbose", "-v", action="store_true",
                      help="also show the INFO logs of JAX, Orbax, grain and absl")


class _ConsoleHandler(logging.Handler):
  """Writes through `tqdm.write` to the current sys.stderr, so progress bars stay intact."""

  def emit(self, record: logging.LogRecord) -> None:
    try:
      tqdm.tqdm.write(self.format(record), file=sys.stderr)
    except Exception:  # pylint: disable=broad-except  # logging must never raise
      self.handleError(record)


def configure(verbose: bool = False) -> None:
  """Our loggers at INFO; every other library at WARNING, or INFO with `verbose`.

  Our handler replaces the plain stderr handler that absl (through `logging.basicConfig`) or a
  library may have installed, so each record prints once, in one format; other handlers (a test
  runner's capture) stay. Calling it again replaces our handler rather than adding a second.
  """
  root = logging.getLogger()
  root.handlers[:] = [h for h in root.handlers if type(h) is not logging.StreamHandler
                      and not isinstance(h, _ConsoleHandler)]
  handler = _ConsoleHandler()
  handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
  root.addHandler(handler)
  library_level = logging.INFO if verbose else logging.WARNING
  root.setLevel(library_level)
  logging.getLogger(PACKAGE_LOGGER).setLevel(logging.INFO)
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  # absl keeps its own threshold (Orbax and grain log through it); set both it and its logger.
  absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
  logging.getLogger("absl").setLevel(library_level)
