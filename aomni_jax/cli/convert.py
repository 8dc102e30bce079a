"""`aomni-convert CKPT OUT [--qwen-processor DIR] [--synchformer PTH]`: checkpoint → model dir.

Reads an official Audio-Omni checkpoint (`model.ckpt` or `.safetensors`), converts every
component strictly (DiT, VAE, conditioner heads, Qwen thinker), one at a time, and writes the
self-contained model directory that `aomni-generate` loads (`inference.model_dir`): config.json,
manifest.json, one Orbax checkpoint per component, and the Qwen tokenizer/processor files copied
from DIR (a local Hugging Face Qwen2.5-Omni-3B folder; the official checkpoint lacks them). Any
missing, unexpected or mis-shaped key stops it with the full list, before anything is written.
With --synchformer (MMAudio's `synchformer_state_dict.pth`, next to `model.ckpt` in the official
release) the directory also gets the `synchformer` component that V2A / V2M need.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from etils import epath

from aomni_jax.cli.errors import UserError, console
from aomni_jax.config import Config, apply_overrides, load_config
from aomni_jax.conversion.common import flat_shapes, read_state_dict
from aomni_jax.conversion.official import COMPONENTS, convert_official, qwen_config
from aomni_jax.conversion.synchformer import convert_synchformer
from aomni_jax.inference import model_dir
from aomni_jax.train.paths import is_uri


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


def synchformer_arrays(path: str, cfg: Config) -> dict:
  """`synchformer_state_dict.pth` → our Synchformer parameters (strict)."""
  from flax import nnx
  from aomni_jax.models.synchformer import Synchformer
  shapes = flat_shapes(nnx.eval_shape(lambda: Synchformer(cfg.model.synchformer,
                                                          rngs=nnx.Rngs(0))))
  return convert_synchformer(read_state_dict(path), shapes)


def convert(checkpoint: str, out_dir: str, cfg: Config, *, processor_dir: str | None = None,
            skip: tuple[str, ...] = (), synchformer: str | None = None) -> list[str]:
  """Converts and writes the model directory; returns the report lines."""
  cfg = with_thinker_architecture(cfg, processor_dir)
  sync_arrays = None if synchformer is None else synchformer_arrays(synchformer, cfg)
  thinker_cfg = None if "qwen" in skip else qwen_config(cfg.model)

  def sink(component, arrays):
    path = model_dir.save_component(out_dir, component, arrays,
                                    config=thinker_cfg if component == "qwen" else None)
    print(f"{component}: {len(arrays)} arrays → {path}", flush=True)

  report = convert_official(lambda keys: read_state_dict(checkpoint, keys),
                            checkpoint_keys(checkpoint), cfg.model, sink, skip=skip)
  model_dir.save_model_dir(out_dir, cfg, {}, processor_dir=processor_dir,
                           source=os.path.basename(checkpoint))
  lines = report.lines()
  if sync_arrays is not None:
    sink("synchformer", sync_arrays)
    lines.append(f"synchformer: {len(sync_arrays)} arrays from {os.path.basename(synchformer)}")
  return lines


@console("aomni-convert")
def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="aomni-convert", description=__doc__.split("\n")[0])
  parser.add_argument("checkpoint", help="official model.ckpt / .pt / .safetensors")
  parser.add_argument("out_dir", help="the model directory to write (a gs:// URI works)")
  parser.add_argument("--qwen-processor", default=None, metavar="DIR",
                      help="local Qwen2.5-Omni-3B folder: its tokenizer/processor files are "
                           "copied (generation needs them) and its config.json gives the thinker")
  parser.add_argument("--synchformer", default=None, metavar="PATH",
                      help="synchformer_state_dict.pth (MMAudio's; V2A / V2M need it)")
  parser.add_argument("--config", default="",
                      help="configs/x.py[:arg] or an official model JSON (default: the real model)")
  parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                      help="config overrides, e.g. sampling.steps=50")
  parser.add_argument("--skip", nargs="*", default=[], choices=COMPONENTS,
                      help="components to leave out (e.g. qwen for a checkpoint without it)")
  args = parser.parse_args(argv)
  cfg = load_config(args.config, args.set) if args.config else apply_overrides(Config(), args.set)
  for flag, path in (("checkpoint", args.checkpoint), ("--synchformer", args.synchformer)):
    if path is not None and is_uri(path):
      raise UserError(f"{flag} {path!r}: the official checkpoints are memory-mapped from local "
                      "disk; copy the file here first (gcloud storage cp)")
  if not os.path.exists(args.checkpoint):
    raise UserError(f"checkpoint {args.checkpoint!r} does not exist")
  if args.synchformer is not None and not os.path.exists(args.synchformer):
    raise UserError(f"--synchformer {args.synchformer!r} does not exist; it is "
                    "synchformer_state_dict.pth from the official release")
  if args.qwen_processor is not None and not epath.Path(args.qwen_processor).is_dir():
    raise UserError(f"--qwen-processor {args.qwen_processor!r} is not a folder; pass the local "
                    "Hugging Face Qwen2.5-Omni-3B folder")
  for line in convert(args.checkpoint, args.out_dir, cfg, processor_dir=args.qwen_processor,
                      skip=tuple(args.skip), synchformer=args.synchformer):
    print(line)
  if args.synchformer is None:
    print("note: no --synchformer given, so the model directory cannot do V2A / V2M from video "
          "files (re-run with --synchformer synchformer_state_dict.pth)")
  if args.qwen_processor is None:
    print("note: no --qwen-processor given, so the model directory has no tokenizer; "
          "aomni-generate needs one (re-run with --qwen-processor DIR)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
