"""Frozen-feature precompute throughput (`aomni-data precompute --model`): what a pod pays once per
dataset before training, per batch, through the same `train.frozen` functions the loop uses.

Random weights at the real sizes (3B Qwen thinker in bf16, the official VAE in fp32): Qwen
features of a batch of chat prompts (64-token bucket, packed to 2048 rows, copied to the host as
the job stores them) and the VAE posterior (mean, std) of a batch of 11 s stereo targets.

  python benchmarks/precompute.py                 # one GPU, batch 8
  python benchmarks/precompute.py --batch 32
  python benchmarks/precompute.py --tiny          # CPU smoke run (tiny config and thinker)

Writes benchmarks/results/precompute_<device>_<date>.json (benchmarks/record.py).
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import random_frozen
import record
from aomni_jax.config import load_config
from aomni_jax.train import frozen


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--tokens", type=int, default=60, help="prompt length in Qwen tokens")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--tiny", action="store_true", help="configs/tiny.py and a tiny thinker")
  args = parser.parse_args()

  config = load_config("configs/tiny.py" if args.tiny else "configs/audio_omni.py")
  stage = frozen.FrozenFeatures(random_frozen.frozen_modules(config, args.tiny, args.tokens),
                                config)
  print(f"frozen modules: {random_frozen.note(args.tiny)}")
  prompts = [f"prompt {i}" for i in range(args.batch)]
  audio = 0.1 * np.random.default_rng(0).standard_normal(
      (args.batch, config.model.vae.audio_channels, config.model.sample_size)).astype(np.float32)

  rows = []
  for what, fn in (("qwen features", lambda: stage.qwen(prompts)),
                   ("vae posterior", lambda: stage.posterior(audio))):
    timing = record.time_calls(fn, args.repeats)
    per_example = timing["median"] / args.batch
    rows.append(dict(what=f"precompute {what}, batch {args.batch}", **timing,
                     per_example_ms=per_example,
                     summary=f"{timing['median']:.1f} ms/batch ({per_example:.2f} ms/example, "
                             f"range {timing['min']:.1f}–{timing['max']:.1f})"))
    print(f"{rows[-1]['what']}: {rows[-1]['summary']}")
  record.save("precompute", rows, dict(config=config.name, frozen=random_frozen.note(args.tiny),
                                       batch=args.batch, tokens=args.tokens,
                                       qwen_dtype=config.model.qwen.dtype,
                                       pad_length=config.model.omni.pad_length,
                                       sample_size=config.model.sample_size,
                                       devices=jax.device_count()))


if __name__ == "__main__":
  main()
