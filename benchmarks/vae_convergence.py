"""How fast the tiny VAE learns to reconstruct real sound: held-out quality against training steps,
for several training recipes (`--variant NAME=KEY=VALUE,KEY=VALUE`).

    python benchmarks/vae_convergence.py --data DIR --steps 4000 --every 500      # GPU sweep
    python benchmarks/vae_convergence.py --data DIR --steps 20 --every 10 \\
        --variant base= wn=autoencoder.weight_norm=True                              # CPU smoke
    python benchmarks/vae_convergence.py --judge runs/tiny/vae/export/step_600
                      # score exported VAEs (the demo's) on the embedded dataset, no training

Each variant is `configs/vae_tiny.py` plus its overrides, trained by the real VAE loop
(`train.autoencoder.loop.train`) on the dataset DIR. The curve is the loop's own held-out report
(mel distance, SI-SDR) at every `--every` steps. At the end, "recognisable" is measured with
YAMNet-JAX embeddings (when its weights are cached): the cosine between each held-out clip and its
reconstruction, and how often a reconstruction's nearest held-out input is its own (chance = 1/N).
The same numbers for simple degradations of the inputs (low-pass, noise, random STFT phase, another
clip) give the scale. Writes `vae_convergence_<device>_<date>.json` and a PNG of the curves.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time
from typing import Callable

import jax
import numpy as np
import scipy.signal
from etils import epath
from flax import nnx

import record
from aomni_jax.audio import dsp
from aomni_jax.config import load_config
from aomni_jax.data import crops
from aomni_jax.inference import model_dir as md
from aomni_jax.models.vae import OobleckVAE
from aomni_jax.train.autoencoder import evaluate, loop as vae_loop
from aomni_jax.train.loop import resolve_data_dir

DEFAULT_VARIANTS = (
    "base=",
    "weight_norm=autoencoder.weight_norm=True",
    "lr5e-4=train.learning_rate=5e-4",
    "no_a_weighting=autoencoder.stft_perceptual_weighting=False",
    "channels16=vae.channels=16",
    "gan=autoencoder.discriminator=True,autoencoder.discriminator_start=500",
)


def _variant(spec: str) -> tuple[str, list[str]]:
  name, _, overrides = spec.partition("=")
  return name, [o for o in overrides.split(",") if o]


def _curve(workdir: pathlib.Path) -> list[dict]:
  points = []
  for metrics in workdir.glob("reconstructions/step_*/metrics.json"):
    result = json.loads(metrics.read_text())
    points.append({"step": int(metrics.parent.name.split("_")[1]),
                   "mel_distance": result["mel_distance"], "si_sdr_db": result["si_sdr_db"]})
  return sorted(points, key=lambda p: p["step"])


def _degradations(rate: int, seed: int = 0) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
  rng = np.random.default_rng(seed)

  def lowpass(hz):
    sos = scipy.signal.butter(8, hz, fs=rate, output="sos")
    return lambda clip: scipy.signal.sosfiltfilt(sos, clip, axis=0)

  def noise(snr_db):
    return lambda clip: clip + rng.standard_normal(clip.shape) * np.sqrt(
        np.mean(clip ** 2) / 10 ** (snr_db / 10))

  def random_phase(clip):
    _, _, spec = scipy.signal.stft(clip.T, nperseg=1024)  # [C, F, frames]
    spec = np.abs(spec) * np.exp(2j * np.pi * rng.random(spec.shape))
    return scipy.signal.istft(spec, nperseg=1024)[1].T[:len(clip)]

  return {"low-pass 4 kHz": lowpass(4000), "noise at 10 dB SNR": noise(10),
          "exact STFT magnitude, random phase": random_phase}


class Recognition:
  """YAMNet-JAX clip embeddings (mono, 16 kHz) of reconstructions against those of the held-out
  originals, which are embedded once."""

  def __init__(self, originals: np.ndarray, rate: int):
    from aomni_jax.evaluation import yamnet, yamnet_jax  # pylint: disable=g-import-not-at-top
    self.model, self.rate, self.backbone_rate = yamnet_jax.YamnetJax(), rate, yamnet.SAMPLE_RATE
    self.originals = self.embed(originals)

  def embed(self, clips: np.ndarray) -> np.ndarray:
    mono = [dsp.resample(c.mean(axis=1), self.rate, self.backbone_rate) for c in clips]
    emb = np.stack([out.embeddings.mean(axis=0) for out in self.model(mono)])
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)

  def score(self, outputs: np.ndarray) -> dict:
    similarity = self.embed(outputs) @ self.originals.T  # [output, original]
    own = np.arange(len(self.originals))
    return {"yamnet_cosine": float(np.mean(np.diag(similarity))),
            "identified": float(np.mean(np.argmax(similarity, axis=1) == own))}


def _fidelity(inputs: np.ndarray, outputs: np.ndarray, rate: int) -> dict:
  scores = evaluate.scores(inputs, outputs, rate)
  return {"mel_distance": scores["mel_distance"], "si_sdr_db": scores["si_sdr_db"]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data", default="",
                      help="a built dataset (aomni-data build); default: the embedded one the demo "
                           "trains on")
  parser.add_argument("--config", default="configs/vae_tiny.py")
  parser.add_argument("--steps", type=int, default=4000)
  parser.add_argument("--every", type=int, default=500)
  parser.add_argument("--variant", nargs="*", default=list(DEFAULT_VARIANTS),
                      metavar="NAME=KEY=VALUE,...")
  parser.add_argument("--judge-clips", type=int, default=32,
                      help="held-out clips for the final judgement (the curve uses the config's)")
  parser.add_argument("--no-references", action="store_true",
                      help="leave out the degraded-input rows (e.g. when variants run in parallel)")
  parser.add_argument("--judge", nargs="*", default=[], metavar="MODEL_DIR",
                      help="score these exported VAEs (model directories) instead of training")
  parser.add_argument("--workdir", default="", help="default: a temporary folder")
  args = parser.parse_args()

  root = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="vae_convergence_"))
  args.data = args.data or resolve_data_dir(load_config(args.config))
  base_sets = [f"data.root={args.data}", f"train.num_steps={args.steps}",
               f"train.sample_every={args.every}", f"train.checkpoint_every={args.steps}"]
  config = load_config(args.config, base_sets)
  rate = config.model.sample_rate
  split = crops.split_signals(args.data, config.autoencoder.holdout_every)
  clips, _ = crops.evaluation_clips(args.data, split.heldout, args.judge_clips,
                                    config.autoencoder.eval_samples,
                                    config.model.vae.audio_channels)
  try:
    recognition = Recognition(clips, rate)
  except Exception as error:  # pylint: disable=broad-except  (weights not cached: skip that part)
    print(f"YAMNet-JAX unavailable ({error}); mel distance and SI-SDR only")
    recognition = None

  def judge(outputs: np.ndarray) -> dict:
    return {**_fidelity(clips, outputs, rate),
            **(recognition.score(outputs) if recognition else {})}

  rows = []
  if not args.no_references:
    rows += [{"what": f"reference: {name}", "summary": "",
              **judge(np.stack([fn(c) for c in clips]))} for name, fn in _degradations(rate).items()]
    rows.append({"what": "reference: another held-out clip", "summary": "",
                 **judge(np.roll(clips, 1, axis=0))})
  def reconstructions(export_dir: str) -> np.ndarray:
    vae_config = md.read_config(export_dir).model.vae
    vae = md.load_component(export_dir, "vae", lambda: OobleckVAE(vae_config, rngs=nnx.Rngs(0)))
    reconstruct = jax.jit(lambda x: vae.decode(vae.encode_mean(x)))
    return np.stack([np.asarray(reconstruct(c[None])[0]) for c in clips])

  for export_dir in args.judge:
    name = "/".join(epath.Path(export_dir).parts[-4:])  # e.g. tiny/vae/export/step_600
    rows.append({"what": f"exported VAE {name}", **judge(reconstructions(export_dir))})
  for spec in [] if args.judge else args.variant:
    name, overrides = _variant(spec)
    workdir = root / name
    start = time.perf_counter()
    result = vae_loop.train(load_config(args.config, base_sets + overrides), str(workdir))
    seconds = time.perf_counter() - start
    rows.append({"what": f"vae_tiny {name}", "overrides": overrides, "steps": args.steps,
                 "seconds": seconds, "curve": _curve(workdir),
                 **judge(reconstructions(result.export_dir))})
  for row in rows:
    extra = (f", YAMNet cosine {row['yamnet_cosine']:.3f}, identified {row['identified']:.0%}"
             if "yamnet_cosine" in row else "")
    row["summary"] = (f"mel distance {row['mel_distance']:.3f}, SI-SDR {row['si_sdr_db']:.1f} dB"
                      f"{extra}")
    print(f"{row['what']:45s} {row['summary']}")
  suffix = ("_judged" if args.judge else
            "_" + _variant(args.variant[0])[0] if len(args.variant) == 1 else "")
  path = record.save("vae_convergence" + suffix, rows, {"config": args.config, "steps": args.steps,
                                               "every": args.every, "heldout_clips": len(clips)})
  if not args.judge:
    _plot([r for r in rows if "curve" in r], [r for r in rows if "curve" not in r],
          path.with_suffix(".png"))
  print(f"wrote {path}")


def _plot(variants: list[dict], references: list[dict], path: pathlib.Path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4))
  for row in variants:
    points = [p for p in row["curve"] if p["mel_distance"] is not None]
    ax.plot([p["step"] for p in points], [p["mel_distance"] for p in points], marker="o",
            label=row["what"])
  for row in references:
    ax.axhline(row["mel_distance"], linestyle=":", color="gray")
    ax.annotate(row["what"].removeprefix("reference: "), (0, row["mel_distance"]), fontsize=7)
  ax.set_xlabel("training step")
  ax.set_ylabel("held-out mel distance")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


if __name__ == "__main__":
  main()
