"""`aomni-convert CKPT OUT_DIR [--config SPEC] [--set k=v ...]`: official checkpoint → Orbax.

Reads an official Audio-Omni checkpoint (`model.ckpt` or `.safetensors`), converts every
component strictly (DiT, VAE, conditioner heads, Qwen thinker) and writes one Orbax checkpoint per
component under OUT_DIR (`dit/`, `vae/`, `heads/`, `qwen/`). Components are read and written one
at a time. Any missing, unexpected or mis-shaped key stops it with the full list.
"""

from __future__ import annotations

import argparse
import os
import sys

from aomni_jax.config import Config, ConfigError, load_config
from aomni_jax.conversion.common import ConversionError, read_state_dict
from aomni_jax.conversion.official import COMPONENTS, convert_official, save_component


def checkpoint_keys(path: str) -> list[str]:
  """The key names of a checkpoint, without reading safetensors data."""
  if path.endswith(".safetensors"):
    from safetensors import safe_open
    with safe_open(path, framework="numpy") as f:
      return list(f.keys())
  return list(read_state_dict(path))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="aomni-convert", description=__doc__)
  parser.add_argument("checkpoint", help="official model.ckpt / .pt / .safetensors")
  parser.add_argument("out_dir", help="where the Orbax checkpoints go (one folder per component)")
  parser.add_argument("--config", default="",
                      help="configs/x.py[:arg] or an official model JSON (default: the real model)")
  parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                      help="config overrides, e.g. qwen.path=/models/Qwen2.5-Omni-3B")
  parser.add_argument("--skip", nargs="*", default=[], choices=COMPONENTS,
                      help="components to leave out (e.g. qwen for a checkpoint without it)")
  args = parser.parse_args(argv)
  try:
    cfg = load_config(args.config, args.set) if args.config else Config()
  except ConfigError as error:
    print(f"aomni-convert: bad config: {error}", file=sys.stderr)
    return 2
  if not os.path.exists(args.checkpoint):
    print(f"aomni-convert: checkpoint {args.checkpoint!r} does not exist", file=sys.stderr)
    return 2
  os.makedirs(args.out_dir, exist_ok=True)

  def sink(component, arrays):
    print(f"{component}: {len(arrays)} arrays → {save_component(args.out_dir, component, arrays)}")

  try:
    report = convert_official(lambda keys: read_state_dict(args.checkpoint, keys),
                              checkpoint_keys(args.checkpoint), cfg.model, sink, skip=args.skip)
  except ConversionError as error:
    print(f"aomni-convert: {error}", file=sys.stderr)
    return 1
  for line in report.lines():
    print(line)
  return 0


if __name__ == "__main__":
  sys.exit(main())
