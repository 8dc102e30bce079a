"""Console logging shared by every command: our INFO lines by default, library chatter on request.

JAX, Orbax, grain and absl log at INFO freely (a training run printed hundreds of such lines, and
every CPU run "Unable to initialize backend 'tpu': ... Failed to open libtpu.so"); a user wants
our progress and summaries plus everyone's warnings, and the rest only when debugging.
"""

from __future__ import annotations

import argparse
import logging

PACKAGE_LOGGER = "aomni_jax"
_FORMAT = "%(asctime)s %(name)s: %(message)s"


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--verbose", "-v", action="store_true",
                      help="also show the INFO logs of JAX, Orbax, grain and absl")


def configure(verbose: bool = False) -> None:
  """Our loggers at INFO; every other library at WARNING, or INFO with `verbose`.

  One stderr handler on the root logger replaces whatever libraries installed at import, so each
  record prints once, in one format.
  """
  handler = logging.StreamHandler()
  handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
  root = logging.getLogger()
  root.handlers[:] = [handler]
  library_level = logging.INFO if verbose else logging.WARNING
  root.setLevel(library_level)
  logging.getLogger(PACKAGE_LOGGER).setLevel(logging.INFO)
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  # absl keeps its own threshold (Orbax and grain log through it) and re-applies it when flags are
  # parsed; set both it and its logger.
  absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
  logging.getLogger("absl").setLevel(library_level)
