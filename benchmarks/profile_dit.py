"""Where the DiT's GPU time goes: trace a few generation steps and a training step, rank kernels.

    python benchmarks/profile_dit.py [--tiny] [--what generate train] [--dit KEY=VALUE ...]

Writes a Perfetto trace with `jax.profiler` and sums device kernel durations by name and by
category (GEMM, attention, fusions, copies), so optimisation starts from measurements.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import os
import sys
import tempfile

import jax

sys.path.insert(0, os.path.dirname(__file__))
import dit as bench  # noqa: E402  (benchmarks/dit.py: model init and inputs)


CATEGORIES = (("attention", ("fmha", "flash", "cudnn", "sdpa", "attention")),
              ("gemm", ("gemm", "nvjet", "cutlass", "cublas", "matmul", "sm90_xmma", "dot")),
              ("copy", ("memcpy", "memset", "copy")),
              ("fusion", ("fusion", "loop_", "input_", "reduce", "transpose", "convert")))


def category(name: str) -> str:
  lower = name.lower()
  for label, needles in CATEGORIES:
    if any(n in lower for n in needles):
      return label
  return "other"


def kernel_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
  """Sums `dur` (µs) of complete events on GPU processes of the Perfetto trace."""
  path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True) +
                glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"),
                          recursive=True))[-1]
  with gzip.open(path, "rt") as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  gpu_pids = {e["pid"] for e in events
              if e.get("ph") == "M" and e.get("name") == "process_name"
              and any(s in str(e.get("args", {}).get("name", "")).lower()
                      for s in ("gpu", "/device:", "stream"))}
  if not gpu_pids:
    names = sorted({str(e.get("args", {}).get("name")) for e in events
                    if e.get("ph") == "M" and e.get("name") == "process_name"})
    print(f"no GPU process in the trace; processes: {names[:20]}")
  by_name, by_cat = collections.Counter(), collections.Counter()
  for e in events:
    if e.get("ph") == "X" and e.get("pid") in gpu_pids and "dur" in e:
      by_name[e["name"]] += float(e["dur"])
      by_cat[category(e["name"])] += float(e["dur"])
  return by_name, by_cat


def report(title: str, trace_dir: str, per: int, unit: str) -> None:
  by_name, by_cat = kernel_times(trace_dir)
  total = sum(by_cat.values()) or 1.0
  print(f"\n== {title}: device kernel time {total / per / 1e3:.2f} ms per {unit}")
  for cat, us in by_cat.most_common():
    print(f"   {cat:<10} {us / per / 1e3:8.3f} ms  {100 * us / total:5.1f}%")
  for name, us in by_name.most_common(25):
    print(f"   {us / per / 1e3:8.3f} ms  {100 * us / total:5.1f}%  {name[:110]}")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--tiny", action="store_true")
  parser.add_argument("--what", nargs="*", default=["generate", "train"])
  parser.add_argument("--clips", type=int, default=1)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--train-batch", type=int, default=8)
  parser.add_argument("--remat", default="dots_no_batch")
  parser.add_argument("--dit", nargs="*", default=[], metavar="KEY=VALUE")
  args = parser.parse_args(argv)
  base, shape = bench.base_config(args.tiny, args.dit)
  attention = "xla" if args.tiny else "cudnn"

  if "generate" in args.what:
    cfg = dataclasses.replace(base, dtype="bfloat16", param_dtype="bfloat16", attention=attention)
    run = bench.make_generation(cfg, shape, args.clips, args.steps, cached=True)
    run(7.0)
    with tempfile.TemporaryDirectory() as trace_dir:
      with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        run(7.0)
      report(f"generate {args.clips} clip(s), cached context", trace_dir, args.steps, "CFG step")
    del run

  if "train" in args.what:
    cfg = dataclasses.replace(base, dtype="bfloat16", param_dtype="float32", attention=attention,
                              remat=args.remat)
    run = bench.make_train_step(cfg, shape, args.train_batch)
    run(jax.random.key(0))
    with tempfile.TemporaryDirectory() as trace_dir:
      with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        run(jax.random.key(1))
      report(f"train step batch {args.train_batch} remat {args.remat}", trace_dir, 1, "step")
  return 0


if __name__ == "__main__":
  sys.exit(main())
