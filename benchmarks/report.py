"""The README's performance table, built from the JSON files in `benchmarks/results/`.

  python benchmarks/report.py                 print the table (newest file per benchmark and device)
  python benchmarks/report.py --readme        also rewrite README.md between the table markers

Only accelerator runs are listed unless --all is given (CPU smoke runs are kept for the record),
except for the benchmarks in CPU_FIGURES, whose CPU figure is a headline of its own.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# Evaluation runs wherever the user is: its CPU clips/s is a headline figure, not a smoke run.
CPU_FIGURES = frozenset({"eval"})
BEGIN, END = "<!-- perf-table:begin -->", "<!-- perf-table:end -->"


def newest(files: list[pathlib.Path], include_cpu: bool) -> list[tuple[dict, dict]]:
  """(environment, row) of the newest measurement of each (benchmark, device, workload), in
  benchmark-name order: a run that measures only some workloads (e.g. `eval.py --backbones`)
  replaces those rows and keeps the others."""
  latest: dict[tuple[str, str, str], tuple[dict, dict]] = {}
  for path in files:
    result = json.loads(path.read_text(encoding="utf-8"))
    if "environment" not in result:  # e.g. aomni-aot's compile reports (their own README rows)
      continue
    env = dict(result["environment"], benchmark=result["benchmark"])
    if env["platform"] == "cpu" and not include_cpu and result["benchmark"] not in CPU_FIGURES:
      continue
    for order, row in enumerate(result["rows"]):
      key = (result["benchmark"], env["device"], row["what"])
      if key not in latest or env["date"] > latest[key][0]["date"]:
        latest[key] = (dict(env, order=order), row)
  return sorted(latest.values(), key=lambda pair: (pair[0]["benchmark"], pair[0]["device"],
                                                   pair[0]["date"], pair[0]["order"]))


def table(measurements: list[tuple[dict, dict]]) -> str:
  lines = ["| benchmark | workload | result | device | date, commit |", "|---|---|---|---|---|"]
  for env, row in measurements:
    where = f"{env['device']}" + (f" ×{env['device_count']}" if env["device_count"] > 1 else "")
    if env["platform"] == "cpu" and env.get("host_cpus"):
      where = f"CPU, {env['host_cpus']} cores"
    stamp = f"{env['date'][:10]}, {env['commit'][:8]}"
    text = row.get("summary") or f"error: {row['error'][:80]}"
    lines.append(f"| {env['benchmark']} | {row['what']} | {text} | {where} | {stamp} |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--readme", action="store_true", help="rewrite README.md's table")
  parser.add_argument("--all", action="store_true", help="include CPU runs")
  args = parser.parse_args(argv)
  text = table(newest(sorted(RESULTS.glob("*.json")), args.all))
  print(text)
  if args.readme:
    readme = ROOT / "README.md"
    body = readme.read_text(encoding="utf-8")
    if BEGIN not in body or END not in body:
      print(f"README.md has no {BEGIN} … {END} markers", file=sys.stderr)
      return 2
    head, rest = body.split(BEGIN, 1)
    readme.write_text(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1],
                      encoding="utf-8")
  return 0


if __name__ == "__main__":
  sys.exit(main())
