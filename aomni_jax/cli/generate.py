"""`aomni-generate`: audio for every task from a converted model directory, one item or many.

One item from flags:
  aomni-generate --checkpoint DIR --task t2a --prompt "rain on a tin roof" --seconds 10 \\
      --steps 100 --cfg 7 --seed 0 --out rain.wav
Many from a JSONL manifest (one JSON object per line, the same fields as the flags), batched,
resumable, sharded over all local devices and, with several hosts, one share per host:
  aomni-generate --checkpoint DIR --manifest requests.jsonl --out-dir OUT

Tasks: t2a, t2m, tts (vc = tts with --audio as the voice prompt), add, remove, extract, style
(--source/--target), v2a, v2m (--video; --mux also writes the video with the new audio on it).
Any --seconds up to 600: longer than one model window
(10.96 s) is generated as overlapping windows joined by inpainting and crossfades. Each item
writes a wav, a JSON sidecar with every parameter and optionally a spectrogram png.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Sequence

import jax
import numpy as np
from etils import epath

from aomni_jax import parallel
from aomni_jax.cli.errors import UserError, console
from aomni_jax.config import Config, MeshConfig, apply_overrides
from aomni_jax.inference import batch, outputs
from aomni_jax.inference.engine import DEFAULT_OVERLAP_SECONDS, AudioOmni
from aomni_jax.inference.items import TASKS, BadItem, parse_item


def parse_mesh(spec: str) -> MeshConfig:
  """'data=2,fsdp=4' → MeshConfig; unnamed axes are 1, except data (-1: the rest)."""
  sizes = {"data": -1, "fsdp": 1, "tensor": 1}
  for part in filter(None, spec.split(",")):
    name, _, value = part.partition("=")
    if name not in sizes or not value.lstrip("-").isdigit():
      raise UserError(f"--mesh {spec!r}: expected comma-separated data=N, fsdp=N, tensor=N")
    sizes[name] = int(value)
  return MeshConfig(**sizes)


def build_mesh(spec: str | None):
  """A (data, fsdp, tensor) mesh over this host's devices (all of them unless every axis size
  is given); None when that is a single device."""
  cfg = parse_mesh(spec or "")
  devices = jax.local_devices()
  if -1 not in (cfg.data, cfg.fsdp, cfg.tensor):
    devices = devices[:cfg.data * cfg.fsdp * cfg.tensor]
  return None if len(devices) == 1 else parallel.make_mesh(cfg, devices)


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="aomni-generate", description=__doc__.split("\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=__doc__.split("\n", 1)[1])
  p.add_argument("--checkpoint", required=True, help="model directory from aomni-convert")
  one = p.add_argument_group("one item")
  one.add_argument("--task", help=", ".join(TASKS))
  one.add_argument("--prompt", default="", help="description, text to speak, or sound to edit")
  one.add_argument("--audio", help="source audio to edit, or the voice prompt for tts / vc")
  one.add_argument("--reference-text", help="transcript of the voice prompt")
  one.add_argument("--source", default="", help="style transfer: the sound to change")
  one.add_argument("--target", default="", help="style transfer: what it should become")
  one.add_argument("--video", help="v2a / v2m: the video file")
  one.add_argument("--seconds", type=float, default=None,
                   help="output duration, up to 600 (default: one window; edits: the source's)")
  one.add_argument("--out", help="output wav (a sidecar .json is written next to it)")
  p.add_argument("--mux", nargs="?", const="", default=None, metavar="OUT.mp4",
                 help="v2a / v2m: also write the video with the generated audio laid on it "
                      "(default: --out with .mp4; with --manifest: OUT_DIR/ID.mp4)")
  many = p.add_argument_group("many items")
  many.add_argument("--manifest", help="JSONL of items (gs:// works)")
  many.add_argument("--out-dir", help="where the outputs and results.jsonl go (gs:// works)")
  many.add_argument("--batch-size", type=int, default=8, help="items per compiled batch")
  p.add_argument("--steps", type=int, default=None, help="solver steps (default: the model's)")
  p.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the model's)")
  p.add_argument("--cfg-rescale", type=float, default=None)
  p.add_argument("--seed", type=int, default=0, help="seed (manifest item i: seed + i)")
  p.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP_SECONDS,
                 help="long-form: seconds shared by consecutive windows")
  p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"),
                 help="DiT and VAE numerics")
  p.add_argument("--mesh", default=None,
                 help="e.g. data=8 or data=2,fsdp=4 (default: data parallel over local devices)")
  p.add_argument("--wav-format", default="pcm16", choices=tuple(outputs.WAV_FORMATS),
                 help="pcm16/pcm24 are peak-normalised like the official API; float is raw")
  p.add_argument("--spectrogram", action="store_true", help="also write a spectrogram png")
  many.add_argument("--tensorboard", default=None, metavar="DIR",
                    help="log clips/s and batch times to TensorBoard")
  p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                 help="mesh.* overrides for multi-host start-up (e.g. mesh.coordinator_address); "
                      "sampling.* for the sampler (e.g. sampling.solver=heun sampling.grid=shifted)")
  return p


def _check(args: argparse.Namespace) -> None:
  if (args.manifest is None) == (args.task is None):
    raise UserError("give either --task (one item, with --out) or --manifest (with --out-dir)")
  if args.task is not None and not args.out:
    raise UserError("--task needs --out FILE.wav")
  if args.manifest is not None and not args.out_dir:
    raise UserError("--manifest needs --out-dir DIR")
  if args.steps is not None and args.steps < 1:
    raise UserError(f"--steps must be >= 1, got {args.steps}")
  if args.batch_size < 1:
    raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
  if args.mux is not None and args.task is not None and not args.video:
    raise UserError("--mux needs --video (it lays the generated audio on that video)")
  if args.overlap <= 0:
    raise UserError(f"--overlap must be > 0 seconds, got {args.overlap}")
  if not epath.Path(args.checkpoint).exists():
    raise UserError(f"--checkpoint {args.checkpoint!r} does not exist; convert the official "
                    "checkpoint with aomni-convert first")


def _settings(args: argparse.Namespace) -> batch.Settings:
  return batch.Settings(batch_size=args.batch_size, seed=args.seed, steps=args.steps,
                        cfg_scale=args.cfg, cfg_rescale=args.cfg_rescale,
                        overlap_seconds=args.overlap, wav_format=args.wav_format,
                        spectrogram=args.spectrogram, tensorboard=args.tensorboard,
                        mux=args.mux is not None)


def generate_one(model: AudioOmni, args: argparse.Namespace) -> None:
  """The single-item mode: flags → one item → --out (+ sidecar, png)."""
  spec = {"task": args.task, "prompt": args.prompt, "audio": args.audio,
          "reference_text": args.reference_text, "source": args.source, "target": args.target,
          "video": args.video, "seconds": args.seconds, "seed": args.seed}
  try:
    item = parse_item({k: v for k, v in spec.items() if v is not None}, index=0,
                      base_seed=args.seed, base_dir=epath.Path("."))
    model.prompt_tokens(item.request)
  except (BadItem, ValueError) as error:
    raise UserError(batch.one_line(error)) from error
  settings = _settings(args)
  item = dataclasses.replace(item, id=epath.Path(args.out).stem)
  start = time.perf_counter()
  audio = model.generate([item.request], seed=[item.seed], **settings.sampling())[0]
  rate = model.cfg.model.sample_rate
  record = batch.sidecar(item, model, settings, len(audio) / rate,
                         time.perf_counter() - start, 1)
  out = epath.Path(args.out)
  outputs.write_item(out.parent, out.stem, np.asarray(audio), rate, record,
                     wav_format=args.wav_format, spectrogram=args.spectrogram, wav_path=out,
                     mux_video=item.request.video if args.mux is not None else None,
                     mp4_path=epath.Path(args.mux) if args.mux else None)


@console("aomni-generate")
def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  _check(args)
  if any(not item.startswith(("mesh.", "sampling.")) for item in args.set):
    raise UserError(f"--set takes mesh.* and sampling.* overrides only, got {args.set}")
  mesh_set = [item for item in args.set if item.startswith("mesh.")]
  parallel.initialize_distributed(apply_overrides(Config(), mesh_set).mesh)
  model = AudioOmni.load(args.checkpoint, mesh=build_mesh(args.mesh), dtype=args.dtype,
                         sampling=[item for item in args.set if item.startswith("sampling.")])
  if args.task is not None:
    generate_one(model, args)
    print(f"wrote {args.out}")
    return 0
  summary = batch.run_manifest(model, args.manifest, args.out_dir, _settings(args))
  print(f"done: {summary.done} generated, {summary.resumed} already there, {summary.failed} bad "
        f"(see {args.out_dir}/{batch.RESULTS_FILE}), {summary.seconds:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
