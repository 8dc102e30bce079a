"""Oobleck VAE speed and memory: decode of a 10 s stereo latent and encode of its audio.

Compared with the official PyTorch code on one H100 (shared/design/official_speed_h100.md §3):
decode z [1,64,236] → [1,2,483328] 83.1 ms in fp32 with the official flags (27.1 ms with TF32),
encode 56.3 ms (26.5 ms TF32); 1.19 TFLOP per direction. Target: decode ≤ 12 ms in bf16.

    python benchmarks/vae.py                        # GPU, full size: every mode
    python benchmarks/vae.py --tiny                 # CPU smoke run, seconds
    python benchmarks/vae.py --only decode --modes bf16 --batch 4
    python benchmarks/vae.py --only decode --modes bf16w --profile "$OUT/vae_trace"

Modes: `bf16` (bf16 convolutions, float32 parameters cast per call), `bf16w` (bf16 parameters
too: fine for the frozen VAE), `fp32` (float32 at "highest" matmul precision: the parity mode),
`tf32` (float32 at the default precision, which lets XLA use TF32 on NVIDIA GPUs). Weights are
random with the golden fixtures' statistics (never zero).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

import jax
import numpy as np
from flax import nnx

from aomni_jax.config import VAEConfig
from aomni_jax.conversion.vae import random_vae
from aomni_jax.models.vae import decoded_length

OFFICIAL_MS = {("decode", "fp32"): 83.1, ("decode", "tf32"): 27.1, ("decode", "bf16"): 27.8,
               ("decode", "bf16w"): 27.8, ("encode", "fp32"): 56.3, ("encode", "tf32"): 26.5,
               ("encode", "bf16"): 27.8, ("encode", "bf16w"): 27.8}
MODES = {"bf16": ("bfloat16", "default", "float32"), "bf16w": ("bfloat16", "default", "bfloat16"),
         "fp32": ("float32", "highest", "float32"), "tf32": ("float32", "default", "float32")}
FULL = dict(cfg=VAEConfig(), frames=236)
TINY = dict(cfg=VAEConfig(channels=8, c_mults=(1, 2, 4), strides=(2, 4, 4), latent_dim=4),
            frames=236)


def _conv(k: int, c_in: int, c_out: int, positions: int) -> int:
  """FLOPs (2 per multiply-accumulate) of a conv evaluated at `positions` input or output steps."""
  return 2 * k * c_in * c_out * positions


def vae_flops(cfg: VAEConfig, frames: int) -> dict[str, int]:
  """Model FLOPs of decoding `frames` latents and of encoding the audio they decode to.

  Transposed convs count their useful work (per input position), as torch's FLOP counter does,
  not the zeros of the dilated formulation.
  """
  widths = [cfg.channels * m for m in (1, *cfg.c_mults)]
  residual = lambda c, n: 3 * (_conv(7, c, c, n) + _conv(1, c, c, n))  # noqa: E731
  n = frames
  decode = _conv(7, cfg.latent_dim, widths[-1], n)
  for i in reversed(range(len(cfg.strides))):
    decode += _conv(2 * cfg.strides[i], widths[i + 1], widths[i], n)
    n *= cfg.strides[i]
    decode += residual(widths[i], n)
  decode += _conv(7, widths[0], cfg.audio_channels, n)
  encode = _conv(7, cfg.audio_channels, widths[0], n)
  for i, s in enumerate(cfg.strides):
    encode += residual(widths[i], n)
    n //= s
    encode += _conv(2 * s, widths[i], widths[i + 1], n)
  encode += _conv(3, widths[-1], 2 * cfg.latent_dim, n)
  return {"decode": decode, "encode": encode}


def peak_memory_gib() -> float | None:
  """Peak device memory of this process so far (None where the backend does not track it)."""
  stats = jax.devices()[0].memory_stats() or {}
  return stats["peak_bytes_in_use"] / 2**30 if "peak_bytes_in_use" in stats else None


def bench(cfg: VAEConfig, frames: int, batch: int, direction: str, mode: str, warmup: int,
          iters: int, profile_dir: str | None = None) -> dict:
  dtype, precision, param_dtype = MODES[mode]
  model = random_vae(dataclasses.replace(cfg, dtype=dtype, param_dtype=param_dtype))
  graphdef, state = nnx.split(model)
  if direction == "decode":
    inputs = jax.random.normal(jax.random.key(1), (batch, frames, cfg.latent_dim))
    fn = lambda s, z: nnx.merge(graphdef, s).decode(z)  # noqa: E731
  else:
    shape = (batch, decoded_length(cfg, frames), cfg.audio_channels)
    inputs = jax.random.uniform(jax.random.key(1), shape, minval=-0.5, maxval=0.5)
    fn = lambda s, a: nnx.merge(graphdef, s).encode(a, jax.random.key(2))  # noqa: E731
  with jax.default_matmul_precision(precision):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(state, inputs).compile()
    compile_s = time.perf_counter() - start
    out = None
    for _ in range(warmup):
      out = jax.block_until_ready(compiled(state, inputs))
    times = []
    for _ in range(iters):
      start = time.perf_counter()
      out = jax.block_until_ready(compiled(state, inputs))
      times.append(time.perf_counter() - start)
    if profile_dir:  # one more call under the profiler, outside the timed ones
      with jax.profiler.trace(f"{profile_dir}/{direction}_{mode}"):
        jax.block_until_ready(compiled(state, inputs))
  if not np.all(np.isfinite(np.asarray(out))):
    raise FloatingPointError(f"{direction} {mode}: non-finite output")
  ms = 1e3 * statistics.median(times)
  memory = compiled.memory_analysis()
  temp_gib = memory.temp_size_in_bytes / 2**30 if memory is not None else float("nan")
  flops = batch * vae_flops(cfg, frames)[direction]
  del state, model
  return dict(direction=direction, mode=mode, shape=tuple(inputs.shape), ms=ms,
              compile_s=compile_s, tflops=flops / ms * 1e3 / 1e12, flops=flops,
              temp_gib=temp_gib, peak_gib=peak_memory_gib())


def print_table(rows: list[dict], full_size: bool) -> None:
  print(f"\ndevice: {jax.devices()[0].device_kind} ({jax.default_backend()})")
  print(f"{'what':<16}{'input shape':<22}{'median ms':>10}{'GFLOP':>9}{'TFLOP/s':>9}"
        f"{'XLA temp GiB':>13}{'peak GiB':>10}{'compile s':>10}{'official ms':>12}")
  for r in rows:
    official = OFFICIAL_MS.get((r["direction"], r["mode"])) if full_size else None
    peak = "n/a" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
    print(f"{r['direction'] + ' ' + r['mode']:<16}{str(list(r['shape'])):<22}{r['ms']:>10.2f}"
          f"{r['flops'] / 1e9:>9.1f}{r['tflops']:>9.2f}{r['temp_gib']:>13.2f}{peak:>10}"
          f"{r['compile_s']:>10.1f}{'' if official is None else f'{official:.1f}':>12}")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tiny", action="store_true", help="small model and CPU-sized inputs")
  parser.add_argument("--only", choices=("decode", "encode"), nargs="+",
                      default=["decode", "encode"])
  parser.add_argument("--modes", choices=tuple(MODES), nargs="+", default=list(MODES))
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--frames", type=int, default=None, help="latent frames (default 236)")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--iters", type=int, default=None, help="timed calls (default 20; 3 tiny)")
  parser.add_argument("--profile", default=None, metavar="DIR",
                      help="also write a profiler trace of one call per row under DIR")
  args = parser.parse_args(argv)
  shape = TINY if args.tiny else FULL
  frames = args.frames or shape["frames"]
  iters = args.iters or (3 if args.tiny else 20)
  rows = [bench(shape["cfg"], frames, args.batch, direction, mode, args.warmup, iters,
                args.profile)
          for direction in args.only for mode in args.modes]
  print_table(rows, full_size=not args.tiny and frames == 236 and args.batch == 1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
