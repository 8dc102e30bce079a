"""`aomni-parity PATH...`: run golden fixtures in the official format, one line per case.

A PATH is a fixture directory (manifest.json inside) or a folder of them (`aomni-parity
tests/golden` runs every fixture there). Anything else, such as the README.md and keys/ that
`tests/golden/*` also matches, is skipped with a note. The exit code is 1 only when a case is out
of tolerance or a fixture cannot be read, and 2 when no PATH holds a fixture.
"""

from __future__ import annotations

import argparse
import sys
import zipfile

from etils import epath
from safetensors import SafetensorError

from aomni_jax.cli import logs
from aomni_jax.cli.errors import ArgumentParser, UserError, console
from aomni_jax.parity import run_fixture

_MANIFEST = "manifest.json"
# What a damaged fixture raises while it is read (the manifest, cases.npz, the weights).
_UNREADABLE = (OSError, ValueError, KeyError, zipfile.BadZipFile, SafetensorError)


def find_fixtures(paths: list[str]) -> tuple[list[epath.Path], list[str]]:
  """(fixture directories in the order given, a note per path that holds none)."""
  fixtures, skipped = [], []
  for name in paths:
    path = epath.Path(name)
    if not path.exists():
      raise UserError(f"{name} does not exist; check the path")
    if (path / _MANIFEST).exists():
      fixtures.append(path)
      continue
    inside = sorted(p for p in path.iterdir() if (p / _MANIFEST).exists()) if path.is_dir() else []
    fixtures += inside
    if not inside:
      skipped.append(f"skip {name}: not a fixture directory (no {_MANIFEST})")
  return fixtures, skipped


@console("aomni-parity")
def main(argv: list[str] | None = None) -> int:
  parser = ArgumentParser(prog="aomni-parity", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("paths", nargs="+", metavar="PATH",
                      help="fixture directories, or folders holding them")
  logs.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  logs.configure(args.verbose)
  fixtures, skipped = find_fixtures(args.paths)
  if not fixtures:
    raise UserError(f"no fixture among {' '.join(args.paths)}: a fixture directory holds "
                    f"{_MANIFEST}, cases.npz and its weights (see tests/golden/README.md)")
  for note in skipped:
    print(note)
  failed = cases = 0
  for fixture in fixtures:
    print(f"== {fixture}", flush=True)
    try:
      results = run_fixture(fixture)
    except _UNREADABLE as err:
      print(f"FAIL could not read {fixture}: {type(err).__name__}: {err}")
      failed += 1
      continue
    if not results:
      print(f"FAIL {fixture}: no case could be compared")
      failed += 1
    for result in results:
      print(result.line(), flush=True)
      failed += not result.passed
    cases += len(results)
  summary = f"{len(fixtures)} fixture(s), {cases} case(s), {len(skipped)} path(s) skipped"
  print(f"{failed} failure(s): {summary}" if failed else f"all cases within tolerance: {summary}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
