"""`aomni-convert model.ckpt OUT [--qwen-processor DIR]`: official checkpoint → a model directory.

Reads an official Audio-Omni checkpoint (`model.ckpt` or `.safetensors`), converts every
component strictly (DiT, VAE, conditioner heads, Qwen thinker), one at a time, and writes the
self-contained model directory that `aomni-generate` loads (`inference.model_dir`): config.json,
manifest.json, one Orbax checkpoint per component, and the Qwen tokenizer/processor files copied
from DIR (a local Hugging Face Qwen2.5-Omni-3B folder; the official checkpoint lacks them). Any
missing, unexpected or mis-shaped key stops it with the full list, before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from etils import epath

from aomni_jax.cli.errors import UserError, console
from aomni_jax.config import Config, apply_overrides, load_config
from aomni_jax.conversion.common import read_state_dict
from aomni_jax.conversion.official import COMPONENTS, convert_official, qwen_config
from aomni_jax.inference import model_dir


def checkpoint_keys(path: str) -> list[str]:
  """The key names of a checkpoint, without reading safetensors data."""
  if path.endswith(".safetensors"):
    from safetensors import safe_open
    with safe_open(path, framework="numpy") as f:
      return list(f.keys())
  return list(read_state_dict(path))


def with_thinker_architecture(cfg: Config, processor_dir: str | None) -> Config:
  """A Qwen2.5-Omni folder's config.json describes the thinker unless qwen.path says otherwise."""
  if cfg.model.qwen.path or not processor_dir:
    return cfg
  if not (epath.Path(processor_dir) / "config.json").exists():
    return cfg  # the published 3B sizes (conversion.official.qwen_config)
  qwen = dataclasses.replace(cfg.model.qwen, path=processor_dir)
  return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, qwen=qwen))


def convert(checkpoint: str, out_dir: str, cfg: Config, *, processor_dir: str | None = None,
            skip: tuple[str, ...] = ()) -> list[str]:
  """Converts and writes the model directory; returns the report lines."""
  cfg = with_thinker_architecture(cfg, processor_dir)
  thinker_cfg = None if "qwen" in skip else qwen_config(cfg.model)

  def sink(component, arrays):
    path = model_dir.save_component(out_dir, component, arrays,
                                    config=thinker_cfg if component == "qwen" else None)
    print(f"{component}: {len(arrays)} arrays → {path}", flush=True)

  report = convert_official(lambda keys: read_state_dict(checkpoint, keys),
                            checkpoint_keys(checkpoint), cfg.model, sink, skip=skip)
  model_dir.save_model_dir(out_dir, cfg, {}, processor_dir=processor_dir,
                           source=os.path.basename(checkpoint))
  return report.lines()


@console("aomni-convert")
def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="aomni-convert", description=__doc__.split("\n")[0])
  parser.add_argument("checkpoint", help="official model.ckpt / .pt / .safetensors")
  parser.add_argument("out_dir", help="the model directory to write (a gs:// URI works)")
  parser.add_argument("--qwen-processor", default=None, metavar="DIR",
                      help="local Qwen2.5-Omni-3B folder: its tokenizer/processor files are "
                           "copied (generation needs them) and its config.json gives the thinker")
  parser.add_argument("--config", default="",
                      help="configs/x.py[:arg] or an official model JSON (default: the real model)")
  parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                      help="config overrides, e.g. sampling.steps=50")
  parser.add_argument("--skip", nargs="*", default=[], choices=COMPONENTS,
                      help="components to leave out (e.g. qwen for a checkpoint without it)")
  args = parser.parse_args(argv)
  cfg = load_config(args.config, args.set) if args.config else apply_overrides(Config(), args.set)
  if not os.path.exists(args.checkpoint):
    raise UserError(f"checkpoint {args.checkpoint!r} does not exist")
  if args.qwen_processor is not None and not epath.Path(args.qwen_processor).is_dir():
    raise UserError(f"--qwen-processor {args.qwen_processor!r} is not a folder; pass the local "
                    "Hugging Face Qwen2.5-Omni-3B folder")
  for line in convert(args.checkpoint, args.out_dir, cfg, processor_dir=args.qwen_processor,
                      skip=tuple(args.skip)):
    print(line)
  if args.qwen_processor is None:
    print("note: no --qwen-processor given, so the model directory has no tokenizer; "
          "aomni-generate needs one (re-run with --qwen-processor DIR)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
