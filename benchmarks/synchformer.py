"""Synchformer speed: sync features of 10 s clips (250 frames, 224×224) at the real size.

The official code (MMAudio, fp32 under inference_mode) costs 11.1 TFLOP per clip by
official_spec §3.4's count (11.83 with the fused aggregation layer it misses; MFU below uses
11.83, the official computation). Target: ≤ 25 ms per clip in bf16 at batch 8 on one H200.

    python benchmarks/synchformer.py                      # GPU, real size: every mode
    python benchmarks/synchformer.py --tiny               # CPU smoke run, seconds
    python benchmarks/synchformer.py --modes bf16 --attention cudnn --batch 8 16

Modes: `fp32` (float32 at "highest" matmul precision: the parity mode and the reference every
other mode's error is measured against), `tf32` (float32 at default precision), `bf16` (bf16
compute, float32 parameters cast per call), `bf16w` (bf16 parameters too: fine for a frozen
tower). Frames are uint8 on the device, normalised inside the jitted call. Weights are random.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import record
from aomni_jax.config import SynchformerConfig
from aomni_jax.models.synchformer import Synchformer, encode_video, official_flops

PEAK_TFLOPS = 790.0  # measured bf16 matmul peak of one H200 (shared/design/speed_h200.md)
MODES = {"fp32": ("float32", "highest", "float32"), "tf32": ("float32", "default", "float32"),
         "bf16": ("bfloat16", "default", "float32"), "bf16w": ("bfloat16", "default", "bfloat16")}
TINY = SynchformerConfig(embed_dim=64, depth=2, num_heads=2, image_size=32, patch_size=8)


def random_state(cfg: SynchformerConfig, seed: int = 0):
  """(graphdef, state): the same random values for every mode (drawn in float32, then cast to
  the mode's parameter dtype), every parameter perturbed so that no layer is a no-op."""
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: Synchformer(cfg, rngs=nnx.Rngs(seed))))
  fp32 = dataclasses.replace(cfg, param_dtype="float32")

  @jax.jit
  def init(key):
    leaves, tree = jax.tree.flatten(nnx.state(Synchformer(fp32, rngs=nnx.Rngs(seed))))
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [(x + 0.02 * jax.random.normal(k, x.shape)).astype(
        cfg.param_dtype) for x, k in zip(leaves, keys)])

  return graphdef, init(jax.random.key(seed))


def make_encoder(cfg: SynchformerConfig, precision: str):
  graphdef, state = random_state(cfg)

  @jax.jit
  def run(state, frames):
    with jax.default_matmul_precision(precision):
      return encode_video(nnx.merge(graphdef, state), frames)

  return lambda frames: run(state, frames)


def peak_memory_gib() -> float:
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use", 0) / 2**30


def bench(base: SynchformerConfig, mode: str, attention: str, batch: int, frames: np.ndarray,
          repeats: int, reference: dict) -> dict:
  dtype, precision, param_dtype = MODES[mode]
  cfg = dataclasses.replace(base, dtype=dtype, param_dtype=param_dtype, attention=attention)
  encode = make_encoder(cfg, precision)
  clips = jnp.asarray(frames[:batch])
  timing = record.time_calls(lambda: encode(clips), repeats)
  out = np.asarray(encode(clips))
  ms = timing["median"]
  flops = official_flops(cfg, frames.shape[1]) * batch
  row = dict(what=f"{mode} {attention} b{batch}", mode=mode, attention=attention, batch=batch,
             ms=ms, ms_per_clip=ms / batch, spread_ms=timing, tflops=flops / ms / 1e9,
             mfu=flops / ms / 1e9 / PEAK_TFLOPS, peak_gib=peak_memory_gib(),
             output_shape=list(out.shape))
  key = (batch,)
  if mode == "fp32" and attention == "xla":
    reference[key] = out
  if key in reference:
    ref = reference[key]
    row["max_rel_err_vs_fp32"] = float(np.abs(out - ref).max() / np.abs(ref).max())
    row["mean_rel_err_vs_fp32"] = float(np.abs(out - ref).mean() / np.abs(ref).mean())
  row["summary"] = (f"{ms / batch:.2f} ms/clip at batch {batch}, {row['mfu']:.0%} MFU"
                    + (f", rel err {row['max_rel_err_vs_fp32']:.1e}" if key in reference else ""))
  return row


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--tiny", action="store_true", help="small model on CPU")
  parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
  parser.add_argument("--attention", nargs="*", default=None,
                      help="backends for bf16 modes (default: xla cudnn on GPU, xla elsewhere)")
  parser.add_argument("--batch", type=int, nargs="*", default=[8])
  parser.add_argument("--seconds", type=float, default=10.0)
  args = parser.parse_args(argv)
  cfg = TINY if args.tiny else SynchformerConfig()
  repeats = 2 if args.tiny else 10
  if args.tiny:
    args.seconds = min(args.seconds, 1.0)
  num_frames = round(args.seconds * cfg.fps)
  attention = args.attention or (["xla", "cudnn"] if jax.default_backend() == "gpu" else ["xla"])
  frames = np.random.default_rng(0).integers(
      0, 256, (max(args.batch), num_frames, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
  rows, reference = [], {}
  # fp32 first: it is the reference the others are compared with.
  modes = sorted(args.modes, key=lambda m: m != "fp32")
  for batch in args.batch:
    for mode in modes:
      for backend in (["xla"] if MODES[mode][0] == "float32" else attention):
        try:
          rows.append(bench(cfg, mode, backend, batch, frames, repeats, reference))
        except Exception as e:  # report and go on: one failing backend must not hide the rest
          rows.append(dict(what=f"{mode} {backend} b{batch}",
                           error=f"{type(e).__name__}: {e}".replace("\n", " ")[:500]))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "spread_ms"}), flush=True)
  print(f"\ndevice: {jax.devices()[0].device_kind}  (MFU vs {PEAK_TFLOPS} TFLOP/s, "
        f"{official_flops(cfg, num_frames) / 1e12:.2f} TFLOP per clip)")
  for r in rows:
    print(f"{r['what']:<22} {r.get('summary', r.get('error'))}")
  record.save("synchformer", rows, dict(vars(args), synchformer=dataclasses.asdict(cfg),
                                        num_frames=num_frames, peak_tflops=PEAK_TFLOPS))
  return 0


if __name__ == "__main__":
  sys.exit(main())
