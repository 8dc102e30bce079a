"""`aomni-eval`: offline metrics for generated audio, reported like a paper's results table.

  aomni-eval --generated GEN_DIR --reference MANIFEST.jsonl --out REPORT_DIR [--tasks t2a,tts]
  aomni-eval references --data DATASET_DIR --out REF_DIR [--tasks add,remove] [--limit 100]

The first reads what `aomni-generate` writes (audio + JSON sidecar per clip) and a reference
manifest (see `aomni_jax/evaluation/items.py` for both formats) and writes report.json,
report.md and report.png. The second turns a built dataset (e.g. a held-out `aomni-data build`
with another seed) into a reference manifest with its ground-truth audio. Paths may be gs://.
"""

from __future__ import annotations

import argparse
import sys

from aomni_jax.cli.errors import ArgumentParser
from aomni_jax.cli.errors import UserError
from aomni_jax.cli.errors import console
from aomni_jax.data import templates


def _parser() -> argparse.ArgumentParser:
  parser = ArgumentParser(prog="aomni-eval", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--generated", help="folder of generated audio + sidecars (required)")
  parser.add_argument("--reference", help="reference manifest (JSONL) (required)")
  parser.add_argument("--out", help="report folder (required)")
  parser.add_argument("--tasks", default="", help=f"comma list of {','.join(templates.TASKS)}")
  parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for per-item CIs")
  parser.add_argument("--set-bootstrap", type=int, default=50, help="resamples for FAD/KID CIs")
  parser.add_argument("--no-musicnn", action="store_true", help="skip the musicnn backbone")
  parser.add_argument("--yamnet", choices=("jax", "onnx"), default="jax",
                      help="float YAMNet in JAX (any device; 20 clips/s on 2 CPU cores) or the "
                           "int8 ONNX (CPU only, 2.4× faster there; different numbers)")
  parser.add_argument("--tensorboard", help="also log the numbers to this TensorBoard folder")
  parser.add_argument("--step", type=int, default=0, help="TensorBoard step of these numbers")
  commands = parser.add_subparsers(dest="command", required=False)
  references = commands.add_parser("references",
                                   description="dataset → reference manifest + ground truth")
  references.add_argument("--data", required=True, help="a built dataset folder")
  references.add_argument("--out", required=True)
  references.add_argument("--tasks", default="",
                          help=f"comma list of {','.join(templates.TASKS)}")
  references.add_argument("--limit", type=int, help="at most this many items per task")
  return parser


def _tasks(text: str) -> tuple[str, ...]:
  tasks = tuple(t for t in text.split(",") if t)
  unknown = sorted(set(tasks) - set(templates.TASKS))
  if unknown:
    raise UserError(f"unknown task(s) {unknown}: use a comma list of {','.join(templates.TASKS)}")
  return tasks


def _evaluate(args: argparse.Namespace) -> int:
  from aomni_jax.evaluation import evaluate
  from aomni_jax.evaluation import items
  from aomni_jax.evaluation import report

  tasks = _tasks(args.tasks)
  pairs, unmatched = items.pair(items.read_generated(args.generated),
                                items.read_manifest(args.reference))
  pairs = [(g, r) for g, r in pairs if not tasks or (g.task or r.task) in tasks]
  if not pairs:
    raise UserError(f"no generated clip in {args.generated} matches an id in {args.reference} "
                    f"(for tasks {tasks or 'all'}); the sidecar `id` or the file stem must equal "
                    "the manifest's `id`")
  samples = items.load_samples(pairs, progress=True)
  music = None if args.no_musicnn else evaluate.music_backbone_or_none()
  config = evaluate.EvalConfig(item_resamples=args.bootstrap, set_resamples=args.set_bootstrap,
                               yamnet=args.yamnet)
  metrics = evaluate.Evaluator(config, music_backbone=music).evaluate(samples, progress=True)
  inputs = {"generated": str(args.generated), "reference": str(args.reference),
            "evaluated": len(samples), "unmatched_generated": len(unmatched),
            "musicnn": "used for t2m" if music else "not available (t2m uses YAMNet only)"}
  path = report.write_report(metrics, args.out, inputs)
  if args.tensorboard:
    import tensorboardX
    with tensorboardX.SummaryWriter(args.tensorboard) as writer:
      for name, value in evaluate.scalars(metrics).items():
        writer.add_scalar(name, value, args.step)
  print(report.markdown(metrics, inputs))
  print(f"wrote {path} (+ report.md, report.png)", file=sys.stderr)
  return 0


def _references(args: argparse.Namespace) -> int:
  from aomni_jax.evaluation import references

  path = references.export_references(args.data, args.out, _tasks(args.tasks), args.limit)
  print(path)
  return 0


@console("aomni-eval")
def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  from aomni_jax.evaluation.backbone import BackboneMissingError
  from aomni_jax.evaluation.fidelity import MetricInputError
  from aomni_jax.evaluation.items import ItemsError
  try:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "references":
      return _references(args)
    missing = [f"--{n}" for n in ("generated", "reference", "out") if not getattr(args, n)]
    if missing:
      parser.error(f"the following arguments are required: {', '.join(missing)}")
    return _evaluate(args)
  except (ItemsError, MetricInputError, BackboneMissingError) as error:
    raise UserError(str(error)) from error


if __name__ == "__main__":
  sys.exit(main())
