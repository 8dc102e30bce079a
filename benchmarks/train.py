"""The full training step (heads + DiT + AdamW + EMA, as `aomni-train` runs it): speed, memory,
largest batch per device and FSDP scaling over 1, 2, 4 … devices.

    python benchmarks/train.py                                  # 1 GPU, full size, batch 8
    python benchmarks/train.py --devices 1 2 4 --batch 8        # FSDP scaling (batch per device)
    python benchmarks/train.py --max-batch                      # + largest batch per device
    python benchmarks/train.py --set dit.remat=dots_no_batch dit.attention=cudnn
    python benchmarks/train.py --tiny                           # CPU smoke run (seconds)

By default the step runs on one in-memory batch of random arrays. With `--features DIR` it also
runs as `aomni-train` does with `data.precomputed=True`: batches come from the real loader
(grain, ArrayRecord, `data.num_workers` worker processes, or each count of `--workers`) over a
precomputed dataset in DIR and go through the loop's frozen stage, so reading and decoding
≈ 16 MB of features per example is inside the step time. DIR is built once (skipped when it
exists, resumed when partial) from the raw dataset `--raw` by the real precompute job
(`data.precompute`), with the real-shape frozen modules holding RANDOM weights
(`benchmarks/random_frozen.py`): the features are noise, the figures are speed only. The same
steps on an in-memory batch of the same shapes run next to it, so the input pipeline's cost is
the difference.

    python benchmarks/train.py --features runs/bench/features --devices 1 2 --workers 2 8
    python benchmarks/train.py --tiny --features runs/bench/features-tiny  # CPU smoke (< 1 min)

`.benchdata/raw` (git-ignored, ≈ 13 MB) is one shard of the embedded default dataset
(`data.default`, 29 records, 65 examples of every task but V2A/V2M) with its manifest recounted;
`--raw` (default `.benchdata/raw`) takes any dataset `aomni-data build` writes.

Targets (issue 6): ≤ 280 ms per step at batch 8 on one H100 (the official code: 604 ms) and
≥ 90 % scaling efficiency per GPU on 2 and 4 GPUs (issue 10: ≥ 93 % on 2×H200 fed by the
loader). MFU uses model FLOPs (official_spec §9: 15.59 TFLOP per training sample) against the
dense bf16 peak of the device. Step time is the time between consecutive step dispatches, read
one step late as the loop's metric logger does, so host work overlaps the device's step.
Writes benchmarks/results/train_<device>_<date>.json (benchmarks/record.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
from etils import epath

import random_frozen
import record
from aomni_jax import parallel
from aomni_jax.config import Config, load_config
from aomni_jax.data import loader, precompute, records
from aomni_jax.train import features, frozen, metrics, state as state_lib, step as step_lib

WARMUP_STEPS = 2
IN_MEMORY = "in-memory batch"
IN_MEMORY_PRECOMPUTED = "in-memory batch, precomputed log-mel"
LOADER = "loader over precomputed features"


@dataclasses.dataclass
class Setup:
  """One mesh's train step, ready to compile."""
  config: Config
  mesh: Any
  spec: state_lib.StateSpec
  train_step: step_lib.TrainStep
  shapes: dict[str, jax.ShapeDtypeStruct]
  batch_size: int

  def compile(self):
    with parallel.mesh_context(self.mesh):
      return self.train_step.fn.lower(self.spec.abstract,
                                      step_lib.abstract_batch(self.train_step, self.shapes),
                                      step_lib.abstract_key(self.train_step)).compile()


def _setup(config: Config, devices: list, per_device_batch: int) -> Setup:
  mesh_cfg = dataclasses.replace(config.mesh, data=1, fsdp=len(devices), tensor=1)
  config = dataclasses.replace(config, mesh=mesh_cfg)
  mesh = parallel.make_mesh(mesh_cfg, devices)
  batch_size = per_device_batch * len(devices)
  spec = state_lib.make_state_spec(config, mesh)
  shapes = features.step_batch_shapes(config, batch_size)
  return Setup(config, mesh, spec, step_lib.build_train_step(config, mesh, shapes, spec), shapes,
               batch_size)


def compiled_bytes(compiled) -> int | None:
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
          - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)


def run_steps(compiled, state, key, next_batch: Callable[[], tuple[dict, float]],
              steps: int) -> tuple[Any, dict]:
  """`steps` timed steps (after `WARMUP_STEPS`) as the loop runs them: take the next step batch
  (`next_batch()` → (batch, seconds spent waiting for the loader)), dispatch the step, read the
  previous step's metrics (`metrics.MetricLogger`), so the host prepares batch n + 1 while the
  device runs step n. Returns the state and the timings in ms."""
  logger = metrics.MetricLogger(None, 0.0, 1, None)
  waits, stages, values = [], [], []
  for _ in range(WARMUP_STEPS + steps):
    start = time.perf_counter()
    batch, waited = next_batch()
    stages.append(time.perf_counter() - start - waited)
    waits.append(waited)
    state, step_metrics = compiled(state, batch, key)
    values.append(logger.push(step_metrics))
  values = values[1:] + [logger.flush()]  # step n's metrics, read at step n + 1
  to_ms = lambda seconds: record.spread([1e3 * s for s in seconds[WARMUP_STEPS:]])
  return state, dict(step=to_ms([v.get("step_time_s") for v in values]), loader_wait=to_ms(waits),
                     stage=to_ms(stages), loss=values[-1]["loss"])


def _row(setup: Setup, devices: list, feed: str, timing: dict, compiled, compile_s: float) -> dict:
  median_s = timing["step"]["median"] / 1e3
  flops = metrics.train_flops_per_example(setup.config) * setup.batch_size
  peak = metrics.peak_tflops(devices[0])
  stats = devices[0].memory_stats() or {}
  tflops = flops / median_s / 1e12 / len(devices)
  return dict(feed=feed, devices=len(devices), batch=setup.batch_size, ms=timing["step"]["median"],
              step_ms=timing["step"], loader_wait_ms=timing["loader_wait"],
              stage_ms=timing["stage"], tflops_per_device=tflops,
              mfu=tflops / peak if peak else None,
              examples_per_s_per_device=setup.batch_size / median_s / len(devices),
              peak_gib=stats.get("peak_bytes_in_use", 0) / 2**30 or None,
              compiled_gib=(compiled_bytes(compiled) or 0) / 2**30 or None,
              compile_s=compile_s, loss=timing["loss"])


def measure(config: Config, devices: list, per_device_batch: int, steps: int,
            modules: frozen.FrozenModules | None = None, features_dir: str = "",
            worker_counts: tuple[int, ...] = ()) -> list[dict]:
  """The in-memory row, and with `features_dir` one loader-fed row per number of data workers
  after it: same compiled step and state, batches through the loop's frozen stage over
  `modules`."""
  setup = _setup(config, devices, per_device_batch)
  t0 = time.perf_counter()
  compiled = setup.compile()
  compile_s = time.perf_counter() - t0
  state = state_lib.init_state(setup.config, setup.spec)
  key = jax.device_put(jax.random.PRNGKey(0), setup.train_step.key_sharding)
  batch = parallel.shard_batch(features.stand_in_step_batch(setup.config, setup.batch_size),
                               setup.train_step.batch_shardings)
  state, timing = run_steps(compiled, state, key, lambda: (batch, 0.0), steps)
  feed = IN_MEMORY_PRECOMPUTED if setup.config.data.precomputed else IN_MEMORY
  rows = [_row(setup, devices, feed, timing, compiled, compile_s)]
  if not features_dir:
    return rows
  stage = features.FrozenStage(setup.config, setup.mesh, modules, setup.batch_size)
  for workers in worker_counts:
    state, timing = _loader_steps(setup, compiled, state, key, stage, features_dir, workers, steps)
    feed = f"{LOADER}, {workers} worker" + "s" * (workers != 1)
    rows.append(dict(_row(setup, devices, feed, timing, compiled, compile_s), workers=workers))
  return rows


def _loader_steps(setup: Setup, compiled, state, key, stage: features.FrozenStage,
                  features_dir: str, workers: int, steps: int) -> tuple[Any, dict]:
  """`run_steps` on batches from the loop's iterator (`workers` data worker processes)."""
  tc = setup.config.train
  iterator = loader.make_train_iterator(
      features_dir, setup.batch_size, seed=tc.seed, worker_count=workers,
      shapes=loader.Shapes.for_model(setup.config.model),
      split="train" if tc.eval_every > 0 else "all", eval_fraction=tc.eval_fraction)
  iterator.start_prefetch()

  def next_batch():
    start = time.perf_counter()
    loader_batch = next(iterator)
    waited = time.perf_counter() - start
    return stage(loader_batch), waited

  try:
    return run_steps(compiled, state, key, next_batch, steps)
  finally:
    gc.collect()  # frees the workers' shared-memory batches before they shut down (as the loop)
    iterator.close()


def ensure_features(config: Config, modules: frozen.FrozenModules, raw_dir: str,
                    features_dir: str) -> dict | None:
  """Precomputes `raw_dir` into `features_dir` through `data.precompute` unless it is there;
  returns the precompute row when it ran."""
  if (epath.Path(features_dir) / records.MANIFEST).exists():
    print(f"features: reusing {features_dir}")
    return None
  if not (epath.Path(raw_dir) / records.MANIFEST).exists():
    raise SystemExit(f"--raw {raw_dir} has no {records.MANIFEST}: give a dataset built by "
                     "`aomni-data build` (e.g. .benchdata/raw, see this file's docstring)")
  print(f"features: precomputing {raw_dir} into {features_dir} ({modules.description})")
  start = time.perf_counter()
  manifest = precompute.precompute(
      raw_dir, features_dir,
      precompute.model_features(config, frozen.FrozenFeatures(modules, config),
                                list(precompute.FEATURES)),
      shapes=loader.Shapes.for_model(config.model))
  seconds = time.perf_counter() - start
  per_item_ms = 1e3 * seconds / manifest.examples
  return dict(what=f"precompute for the loader benchmark, {manifest.examples} examples",
              seconds=seconds, examples=manifest.examples, per_example_ms=per_item_ms,
              summary=f"{seconds:.0f} s ({per_item_ms:.0f} ms/example, compilation included; "
                      f"{modules.description})")


def check_features(config: Config, features_dir: str) -> None:
  """Fails early when `features_dir` holds features of other shapes (another config)."""
  first = loader.ExampleDecoder(include_audio=False)(
      loader.ExampleSource(records.Manifest.load(features_dir).shard_paths(features_dir))[0])
  for name, shape in features.step_batch_shapes(config, 1).items():
    if name in first and np.shape(first[name]) != shape.shape[1:]:
      raise SystemExit(f"{features_dir}: {name} has shape {np.shape(first[name])}, this config "
                       f"needs {shape.shape[1:]}; give another --features folder")


def largest_batch(config: Config, devices: list, start: int, limit: int) -> int:
  """The largest batch per device whose compiled step fits in device memory (compile only)."""
  capacity = (devices[0].memory_stats() or {}).get("bytes_limit")
  if not capacity:
    return -1

  def fits(b):
    try:
      needed = compiled_bytes(_setup(config, devices, b).compile())
    except Exception as err:  # pylint: disable=broad-except  (XLA reports OOM at compile time)
      if "RESOURCE_EXHAUSTED" in str(err) or "out of memory" in str(err).lower():
        return False
      raise
    return needed is not None and needed <= 0.97 * capacity

  best, b = 0, start
  while b <= limit and fits(b):
    best, b = b, b * 2
  low, high = best, min(b, limit + 1)
  while high - low > 1:
    mid = (low + high) // 2
    low, high = (mid, high) if fits(mid) else (low, mid)
  return low


def _fmt(value, spec):
  return "-" if value is None else format(value, spec)


def _percent(fraction):
  return "-" if fraction is None else f"{100 * fraction:.1f}%"


def add_comparisons(rows: list[dict]) -> None:
  """Scaling per device vs the 1-device row of the same feed, loader overhead vs in-memory, and
  each row's `what` / `summary` for the README table."""
  base = {r["feed"]: r["examples_per_s_per_device"] for r in rows if r["devices"] == 1}
  in_memory = {r["devices"]: r["ms"] for r in rows if "workers" not in r}
  for r in rows:
    r["scaling"] = r["examples_per_s_per_device"] / base[r["feed"]] if r["feed"] in base else None
    r["loader_overhead"] = (r["ms"] / in_memory[r["devices"]] - 1
                            if "workers" in r and r["devices"] in in_memory else None)
    devices = f"{r['devices']} device" + ("s" if r["devices"] > 1 else "")
    r["what"] = f"full step, {r['feed']}, {devices} × batch {r['batch'] // r['devices']}"
    parts = [f"{r['ms']:.1f} ms/step (range {r['step_ms']['min']:.1f}–{r['step_ms']['max']:.1f})",
             f"MFU {_percent(r['mfu'])}",
             f"{r['examples_per_s_per_device']:.2f} ex/s/device"]
    if r["devices"] > 1 and r["scaling"]:
      parts.append(f"scaling {100 * r['scaling']:.1f}%")
    if "workers" in r:
      parts.append(f"loader wait {r['loader_wait_ms']['median']:.1f} ms/step")
      if r["loader_overhead"] is not None:
        parts.append(f"{100 * r['loader_overhead']:+.1f}% vs in-memory")
    r["summary"] = ", ".join(parts)


def print_table(rows: list[dict]) -> None:
  print("| feed | devices | global batch | median ms | TFLOP/s/dev | MFU | ex/s/dev | scaling | "
        "loader wait ms | stage ms | peak GiB | compiled GiB | compile s | loss |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['feed']} | {r['devices']} | {r['batch']} | {r['ms']:.1f} | "
          f"{r['tflops_per_device']:.1f} | {_percent(r['mfu'])} | "
          f"{r['examples_per_s_per_device']:.2f} | {_percent(r['scaling'])} | "
          f"{r['loader_wait_ms']['median']:.1f} | {r['stage_ms']['median']:.1f} | "
          f"{_fmt(r['peak_gib'], '.1f')} | {_fmt(r['compiled_gib'], '.1f')} | "
          f"{r['compile_s']:.0f} | {r['loss']:.4f} |")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="configs/audio_omni.py")
  parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
  parser.add_argument("--batch", type=int, default=8, help="batch per device")
  parser.add_argument("--devices", type=int, nargs="*", default=[1])
  parser.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
  parser.add_argument("--max-batch", action="store_true")
  parser.add_argument("--features", default="", metavar="DIR",
                      help="also train fed by the loader from this precomputed dataset "
                           "(built from --raw first if it has no manifest)")
  parser.add_argument("--raw", default=".benchdata/raw", metavar="DIR",
                      help="raw dataset (aomni-data build) that --features is precomputed from")
  parser.add_argument("--workers", type=int, nargs="*", metavar="N",
                      help="data worker processes of the loader-fed runs (default: "
                           "data.num_workers of the config, as aomni-train)")
  parser.add_argument("--tokens", type=int, default=60,
                      help="prompt length of the stand-in Qwen tokenizer (precompute)")
  parser.add_argument("--tiny", action="store_true", help="configs/tiny.py, batch 2, 2 steps")
  args = parser.parse_args(argv)
  if args.tiny:
    args.config, args.batch, args.steps = "configs/tiny.py", 2, 2
  config = load_config(args.config, args.set)
  available = jax.devices()
  rows, extra_rows, modules = [], [], None
  if args.features:
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, precomputed=True))
    modules = random_frozen.frozen_modules(config, args.tiny, args.tokens)
    precomputed = ensure_features(config, modules, args.raw, args.features)
    extra_rows += [precomputed] if precomputed else []
    check_features(config, args.features)
  for n in args.devices:
    if n > len(available):
      print(f"skipping {n} devices: only {len(available)} available", file=sys.stderr)
      continue
    rows += measure(config, available[:n], args.batch, args.steps, modules, args.features,
                    tuple(args.workers or [config.data.num_workers]))
  add_comparisons(rows)
  dit = config.model.dit
  print(f"device: {available[0].device_kind} | config {args.config} | dit {dit.embed_dim}x"
        f"{dit.depth} dtype={dit.dtype} remat={dit.remat} attention={dit.attention} | "
        f"{metrics.train_flops_per_example(config) / 1e12:.2f} TFLOP per example"
        + (f" | features: {random_frozen.note(args.tiny)}" if args.features else ""))
  print_table(rows)
  if args.max_batch:
    largest = largest_batch(config, available[:1], args.batch, 256)
    extra_rows.append(dict(what="largest batch per device, 1 device (compile-time memory)",
                           batch=largest, summary=str(largest) if largest > 0 else
                           "unknown: the device reports no memory limit"))
    print(f"largest batch per device (1 device, compile-time memory): {largest}")
  record.save("train", rows + extra_rows,
              dict(config=args.config, overrides=args.set, batch_per_device=args.batch,
                   steps=args.steps, warmup_steps=WARMUP_STEPS, devices=args.devices,
                   features=args.features or None, raw=args.raw if args.features else None,
                   frozen=random_frozen.note(args.tiny) if args.features else None,
                   workers=args.workers or [config.data.num_workers], dit=dataclasses.asdict(dit)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
