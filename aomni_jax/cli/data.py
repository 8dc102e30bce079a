"""`aomni-data`: build, precompute and inspect datasets (thin wrapper over `aomni_jax.data`).

  aomni-data build --out DIR                      the embedded default (Debian packages)
  aomni-data build --out DIR --sources sonic-pi,asterisk --mixtures 500
  aomni-data build --out DIR --table clips.csv    your corpus: CSV path,label[,kind,caption,…]
  aomni-data build --out DIR --stems STEMS_DIR    separated stems → edit pairs (real branch)
  aomni-data precompute --data DIR --out DIR --model CONVERTED_DIR   Qwen + VAE features
  aomni-data inspect --data DIR --out PREVIEW_DIR --examples 6

DIR, PREVIEW_DIR and --table (with the clips it names) may be bucket URIs, e.g. gs://b/data;
--stems is a local folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from etils import epath

from aomni_jax.audio import io as audio_io
from aomni_jax.cli import logs
from aomni_jax.cli.errors import ArgumentParser, UserError, console
from aomni_jax.data import build
from aomni_jax.data import default
from aomni_jax.data import loader
from aomni_jax.data import precompute
from aomni_jax.data import preview
from aomni_jax.data import real
from aomni_jax.data import records
from aomni_jax.data import sources
from aomni_jax.data import storage


def _parser() -> argparse.ArgumentParser:
  parser = ArgumentParser(prog="aomni-data", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True)

  b = commands.add_parser("build", help="sources → ArrayRecord shards + manifest")
  b.add_argument("--out", required=True)
  b.add_argument("--table", help="clip CSV (columns: " + ",".join(sources.CSV_COLUMNS) + ")")
  b.add_argument("--stems", help="folder of separated stems with labels.csv (real branch)")
  b.add_argument("--sources", default=",".join(default.DEFAULT_SOURCES),
                 help=f"Debian sources when no --table/--stems: {','.join(sources.DEBIAN_SOURCES)}")
  b.add_argument("--cache", default=os.path.expanduser("~/.cache/aomni_jax/debian"))
  b.add_argument("--no-style", action="store_true", help="skip the soundfont / style pairs")
  defaults = default.DEFAULT_BUILD
  b.add_argument("--seed", type=int, default=defaults.seed)
  b.add_argument("--mixtures", type=int, default=defaults.mixtures)
  b.add_argument("--max-events", type=int, default=defaults.max_events_per_mixture,
                 help="events per mixture are drawn from 1..N; the edit targets one of them")
  b.add_argument("--voice-clones", type=int, default=defaults.voice_clone_pairs,
                 help="TTS items with a voice prompt (two clips of one speaker)")
  b.add_argument("--style-pairs", type=int, default=defaults.style_pairs)
  b.add_argument("--singles", type=int, default=defaults.max_singles_per_kind,
                 help="max T2A / T2M / TTS items per clip kind")
  b.add_argument("--shards", type=int, default=defaults.num_shards)
  b.add_argument("--workers", type=int, default=defaults.workers)
  b.add_argument("--codec", default=defaults.codec, choices=sorted(audio_io.CODECS))

  p = commands.add_parser("precompute", help="frozen features → feature shards")
  p.add_argument("--data", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--model", required=True,
                 help="converted model directory (aomni-convert, or a training export) whose "
                      "VAE and Qwen thinker make the features; its config.json sets the shapes")
  p.add_argument("--features", default=",".join(precompute.FEATURES),
                 help=f"comma list of {','.join(precompute.FEATURES)}")
  p.add_argument("--batch-size", type=int, default=8)
  p.add_argument("--drop-stems", action="store_true", help="drop audio once features exist")

  i = commands.add_parser("inspect", help="summary + a few examples as wav and spectrogram PNG")
  i.add_argument("--data", required=True)
  i.add_argument("--out", help="where to write examples (default: DATA/preview)")
  i.add_argument("--examples", type=int, default=4)
  for command in (b, p, i):
    logs.add_verbose_flag(command)
  return parser


def _at_least_one(args: argparse.Namespace, *names: str) -> None:
  for name in names:
    if getattr(args, name) < 1:
      raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")


def _dataset(directory: str) -> records.Manifest:
  """The manifest of a built dataset; a wrong --data is the user's to fix."""
  try:
    return records.Manifest.load(directory)
  except (FileNotFoundError, ValueError) as err:
    raise UserError(f"--data {directory}: {err}; build one with "
                    "`aomni-data build --out DIR`") from err


def _read_table(path: str) -> list[sources.Clip]:
  try:
    return sources.read_table(path)
  except ValueError as err:  # a row without path/label, or an unknown kind
    raise UserError(str(err)) from err


def _build(args: argparse.Namespace) -> None:
  _at_least_one(args, "shards", "workers")
  if args.table and args.stems:
    raise UserError("--table and --stems are two different sources; give one of them")
  if args.table and not epath.Path(args.table).is_file():
    raise UserError(f"--table {args.table} is not a file; give a clip CSV "
                    f"({','.join(sources.CSV_COLUMNS)})")
  if args.stems and not os.path.isfile(os.path.join(args.stems, "labels.csv")):
    raise UserError(f"--stems {args.stems} has no labels.csv; see aomni_jax/data/README.md")
  config = dataclasses.replace(default.DEFAULT_BUILD, seed=args.seed, mixtures=args.mixtures,
                               max_events_per_mixture=args.max_events,
                               voice_clone_pairs=args.voice_clones,
                               style_pairs=0 if args.no_style else args.style_pairs,
                               max_singles_per_kind=args.singles, num_shards=args.shards,
                               workers=args.workers, codec=args.codec)
  if args.stems:
    manifest, report = real.build_real_dataset(args.stems, args.out, config)
    print(f"stems kept {report.kept}, dropped: {report.dropped.summary()}")
  else:
    clips = (_read_table(args.table) if args.table else
             sources.debian_clips(args.sources.split(","), args.cache))
    soundfont = None if args.no_style else sources.debian_soundfont(args.cache)
    manifest = build.build_dataset(clips, args.out, config, soundfont=soundfont)
    sources.write_table(clips, storage.join(args.out, "clips.csv"))
  print(preview.summary(manifest))


def _precompute(args: argparse.Namespace) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from aomni_jax import parallel  # pylint: disable=g-import-not-at-top
  from aomni_jax.inference import model_dir  # pylint: disable=g-import-not-at-top
  from aomni_jax.train import frozen  # pylint: disable=g-import-not-at-top
  _dataset(args.data)
  config = model_dir.read_config(args.model)
  parallel.initialize_distributed(config.mesh)
  # Each host runs the frozen modules on its own devices over its own shards.
  mesh = parallel.make_mesh(config.mesh, jax.local_devices())
  modules = frozen.load_frozen(args.model, config, mesh)
  print(f"frozen modules: {modules.description or args.model}")
  stage = frozen.FrozenFeatures(modules, config)
  features = precompute.model_features(config, stage, args.features.split(","))
  manifest = precompute.precompute(args.data, args.out, features, batch_size=args.batch_size,
                                   drop_stems=args.drop_stems,
                                   shapes=loader.Shapes.for_model(config.model),
                                   process_index=jax.process_index(),
                                   process_count=jax.process_count())
  if manifest:
    print(preview.summary(manifest))


def _inspect(args: argparse.Namespace) -> None:
  _at_least_one(args, "examples")
  print(preview.summary(_dataset(args.data)))
  out = args.out or storage.join(args.data, "preview")
  for png in preview.write_examples(args.data, out, args.examples):
    print(png)


@console("aomni-data")
def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  logs.configure(args.verbose)
  try:
    {"build": _build, "precompute": _precompute, "inspect": _inspect}[args.command](args)
  except (FileNotFoundError, ValueError) as error:
    raise UserError(f"{args.command}: {error}") from error
  return 0


if __name__ == "__main__":
  sys.exit(main())
