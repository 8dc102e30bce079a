"""`aomni-parity FIXTURE_DIR...`: run golden fixtures in the official format, one line per case."""

from __future__ import annotations

import argparse
import sys

from aomni_jax.parity import run_fixture


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="aomni-parity", description=__doc__)
  parser.add_argument("fixtures", nargs="+", help="fixture directories (manifest.json inside)")
  args = parser.parse_args(argv)
  failed = 0
  for fixture in args.fixtures:
    print(f"== {fixture}")
    try:
      results = run_fixture(fixture)
    except (FileNotFoundError, ValueError, KeyError) as e:
      print(f"FAIL could not run {fixture}: {e}")
      failed += 1
      continue
    if not results:
      print(f"FAIL {fixture}: no case could be compared")
      failed += 1
    for result in results:
      print(result.line())
      failed += not result.passed
  print(f"{'all cases within tolerance' if not failed else f'{failed} failure(s)'}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
