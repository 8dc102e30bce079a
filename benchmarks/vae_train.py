"""Speed of one VAE training step (`aomni-train` with a `kind="vae"` config), random audio.

    python benchmarks/vae_train.py                          # CPU smoke run: configs/vae_tiny.py
    python benchmarks/vae_train.py --full --batch 8         # GPU: the official-size VAE, bf16
    python benchmarks/vae_train.py --full --batch 8 --set autoencoder.discriminator=True

`--full` swaps in the official Oobleck VAE (VAEConfig defaults: 128 channels, ratio 2048, 64
latent channels) computing in bf16 on 65536-sample (1.49 s) crops, with the discriminator of
Stable Audio Open's VAE config (64 filters, FFT sizes 2048…128) when it is switched on. Writes a
JSON (device, commit, jax version, config, median and spread of the step time) to
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import statistics
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np

from aomni_jax import parallel
from aomni_jax.config import VAEConfig, apply_overrides, load_config, to_dict
from aomni_jax.train.autoencoder import step as step_lib
from aomni_jax.train.state import init_state

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _commit() -> str:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default=str(ROOT / "configs" / "vae_tiny.py"))
  parser.add_argument("--full", action="store_true", help="the official-size VAE in bf16")
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
  parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
  args = parser.parse_args()

  config = load_config(args.config)
  if args.full:
    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, vae=VAEConfig(dtype="bfloat16")), autoencoder=dataclasses.replace(
            config.autoencoder, crop_samples=65536, eval_samples=65536, disc_filters=64,
            disc_fft_sizes=(2048, 1024, 512, 256, 128)))
  config = apply_overrides(config, [f"train.batch_size={args.batch}", *args.set])
  mesh = parallel.make_mesh(config.mesh)
  train_step = step_lib.build_step(config, mesh)
  state = init_state(config, train_step.spec, step_lib.build_modules)
  shape = step_lib.batch_shapes(config, args.batch)[step_lib.AUDIO].shape
  audio = 0.1 * np.random.default_rng(0).standard_normal(shape).astype(np.float32)
  batch = {step_lib.AUDIO: jax.device_put(audio, train_step.batch_shardings[step_lib.AUDIO])}
  key = jnp.zeros(2, jnp.uint32)
  start = time.perf_counter()
  compiled = train_step.fn.lower(state, batch, key).compile()
  compile_s = time.perf_counter() - start
  times = []
  for i in range(args.warmup + args.steps):
    start = time.perf_counter()
    state, metrics = compiled(state, batch, key)
    jax.block_until_ready(metrics["loss"])
    if i >= args.warmup:
      times.append(time.perf_counter() - start)
  device = jax.devices()[0]
  result = {
      "benchmark": "vae_train_step", "device": device.device_kind, "devices": jax.device_count(),
      "commit": _commit(), "jax": jax.__version__, "full_size": args.full,
      "batch": args.batch, "crop_samples": config.autoencoder.crop_samples,
      "discriminator": config.autoencoder.discriminator, "compile_s": compile_s,
      "step_ms_median": 1e3 * statistics.median(times),
      "step_ms_min": 1e3 * min(times), "step_ms_max": 1e3 * max(times),
      "audio_seconds_per_s": args.batch * shape[1] / config.model.sample_rate
                             / statistics.median(times),
      "config": to_dict(config),
  }
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  name = (f"vae_train_{'full' if args.full else 'tiny'}_"
          f"{'gan' if config.autoencoder.discriminator else 'stft'}_b{args.batch}_"
          f"{device.platform}.json")
  (out / name).write_text(json.dumps(result, indent=2, default=str))
  print(f"{device.device_kind}: step {result['step_ms_median']:.1f} ms median "
        f"[{result['step_ms_min']:.1f}, {result['step_ms_max']:.1f}], compile {compile_s:.1f} s, "
        f"{result['audio_seconds_per_s']:.1f} s of audio per s -> {out / name}")


if __name__ == "__main__":
  main()
