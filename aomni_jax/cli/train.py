"""`aomni-train`: train the DiT and conditioner heads (thin wrapper over `aomni_jax.train.loop`).

  aomni-train --config configs/tiny.py                 the CPU demo on the embedded dataset
  aomni-train --config configs/tiny.py --set train.num_steps=50 --workdir /tmp/run
  aomni-train --config configs/audio_omni.py --workdir /mnt/runs/run1 --set mesh.data=2 \
      data.root=FEATURES data.precomputed=true data.model_dir=CONVERTED_DIR
  aomni-train --config configs/audio_omni.py --init CONVERTED_DIR --set train.lora_rank=16 ...
  aomni-train --config configs/vae_tiny.py             the tiny VAE (a config with kind="vae")

Writes `<workdir>/checkpoints` (Orbax, resumed automatically), `<workdir>/tensorboard`,
`<workdir>/metrics.jsonl`, `<workdir>/export/step_N` (a converted model directory with the EMA
weights, for --init and for aomni-generate) and
`<workdir>/samples/step_N` (wav + spectrogram PNG per fixed prompt / edit input). Look at a run
with `tensorboard --logdir <workdir>/tensorboard` (pip install -e '.[tensorboard]').
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aomni_jax.cli import logs
from aomni_jax.cli.errors import ArgumentParser, console
from aomni_jax.config import Config, load_config

# Exported by `aomni-launch tpu run` (and launch/gpu/run.sh) for the run's own folder.
WORKDIR_ENV = "AOMNI_WORKDIR"
# Named, not __name__: under `python -m` that is "__main__", outside the package's INFO logger.
_log = logging.getLogger("aomni_jax.cli.train")


def _parser() -> argparse.ArgumentParser:
  parser = ArgumentParser(prog="aomni-train", description=__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", required=True,
                      help="configs/NAME.py[:arg] (get_config) or an official model JSON")
  parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                      help="config overrides, e.g. train.num_steps=50 dit.depth=2")
  parser.add_argument("--workdir",
                      help=f"output directory (default: ${WORKDIR_ENV} if set, else train.workdir "
                           "of the config)")
  parser.add_argument("--init", help="converted model directory to fine-tune from (sets "
                                     "train.init; its DiT and heads must fit the config)")
  logs.add_verbose_flag(parser)
  return parser


def choose_workdir(flag: str | None, config: Config) -> tuple[str, str]:
  """The run's folder and where it came from: --workdir, else $AOMNI_WORKDIR, else the config."""
  if flag:
    return flag, "--workdir"
  if os.environ.get(WORKDIR_ENV):
    return os.environ[WORKDIR_ENV], f"${WORKDIR_ENV}"
  return config.train.workdir, "train.workdir"


@console("aomni-train")
def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  logs.configure(args.verbose)
  overrides = list(args.set) + ([f"train.init={args.init}"] if args.init else [])
  config = load_config(args.config, overrides)
  workdir, source = choose_workdir(args.workdir, config)
  _log.info("workdir %s (from %s)", workdir, source)
  # Imported after the config is valid: JAX starts its backends on import of the loop's deps.
  from aomni_jax.train import loop  # pylint: disable=g-import-not-at-top
  if config.kind == "vae":
    from aomni_jax.train.autoencoder import loop as vae_loop  # pylint: disable=g-import-not-at-top
    train = vae_loop.train
  else:
    train = loop.train
  try:
    result = train(config, workdir)
  except KeyboardInterrupt:  # before the loop's handler was active, or a second Ctrl-C
    print("aomni-train: aborted; run the same command to resume from the last checkpoint",
          file=sys.stderr)
    return 130
  except loop.NonFiniteError as err:
    print(f"aomni-train: {err}", file=sys.stderr)
    return 3
  if result.interrupted:
    saved = ("" if result.saved else " (not checkpointed: train.checkpoint_on_signal=false; the "
             "resume starts from the last checkpoint)")
    print(f"interrupted at step {result.final_step}{saved}; run the same command to resume")
    return 0
  print(f"trained to step {result.final_step}; checkpoints in {result.checkpoint_dir}")
  if result.export_dir:
    print(f"EMA weights for inference: {result.export_dir}")
  if config.kind == "vae" and result.export_dir:
    print(vae_loop.summary_line(args.workdir or config.train.workdir))
  for path in result.sample_paths:
    print(f"{'reconstructions' if config.kind == 'vae' else 'sample'}: {path} (+ .png)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
