"""cli/logs.py: our INFO lines by default, library INFO (JAX's libtpu probe, absl) only verbose."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from absl import logging as absl_logging

from aomni_jax.cli import logs
from tests.cli.scripts import ROOT

# A command's life in miniature: configure, start JAX's backends (the TPU probe logs at INFO on a
# CPU host), log through absl (as Orbax and grain do) and through our own logger.
_PROGRAM = """
import logging, sys
from absl import logging as absl_logging
from aomni_jax.cli import logs
logging.basicConfig(level=logging.INFO)  # what the commands did before: every library's INFO
logs.configure(verbose=sys.argv[1] == "verbose")
import jax
jax.devices()
absl_logging.info("absl chatter")
logging.getLogger("aomni_jax.demo").info("our progress")
logging.getLogger("orbax").warning("a library warning")
"""


def _stderr_lines(mode: str) -> list[str]:
  env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("JAX_PLATFORMS", None)  # let JAX probe for a TPU as on a user's machine
  result = subprocess.run([sys.executable, "-c", _PROGRAM, mode], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
  return result.stderr.splitlines()


def test_default_shows_our_info_and_warnings_only():
  lines = _stderr_lines("quiet")
  assert [line.split(" ", 1)[1] for line in lines] == ["aomni_jax.demo: our progress",
                                                       "orbax: a library warning"]


def test_verbose_adds_library_info():
  lines = _stderr_lines("verbose")
  assert any(line.endswith("absl: absl chatter") for line in lines)
  assert any(line.endswith("aomni_jax.demo: our progress") for line in lines)


@pytest.fixture
def restore_logging():
  root = logging.getLogger()
  saved = root.handlers[:], root.level, absl_logging.get_verbosity()
  yield
  root.handlers[:], level, verbosity = saved
  root.setLevel(level)
  absl_logging.set_verbosity(verbosity)


def test_configure_replaces_the_basic_config_handler_once(restore_logging):
  root = logging.getLogger()
  root.addHandler(logging.StreamHandler())  # what absl's first log call installs
  kept = logging.NullHandler()  # e.g. a test runner's capture
  root.addHandler(kept)
  logs.configure()
  logs.configure()
  assert kept in root.handlers
  assert not any(type(h) is logging.StreamHandler for h in root.handlers)
  console = logs._ConsoleHandler  # pylint: disable=protected-access
  assert len([h for h in root.handlers if isinstance(h, console)]) == 1
