"""End-to-end generation speed: prompt → Qwen features → heads → 100-step CFG 7 sampler → VAE.

Real size with random weights (Qwen2.5-Omni-3B thinker in bf16, the 3.04 B DiT and the VAE in
`--dtype`), through `AudioOmni.generate_batch`, the code path of `aomni-generate`: host-side
preparation, tokens padded to the run's bucket, features kept on the device. For each batch size
it prints the median end-to-end time (and its spread), the time per clip, and a stage breakdown
(measured in a separate pass that waits after each stage) next to the DiT-only figure. Targets on
one H200: 1 clip ≤ 1.6 s, batch 8 ≤ 1.35 s per clip, stages outside the DiT ≤ 10 %.

The Qwen tokenizer files are not needed: a stand-in tokenizer gives a real-length prompt
(`--prompt-tokens`, default 96, about what the T2A template plus a one-line prompt gives).

    python benchmarks/generate.py                      # GPU, real size, batches 1 and 8
    python benchmarks/generate.py --tiny               # CPU smoke run (tiny model, 2 steps)

Writes a result JSON through `benchmarks/record.py` (device, commit, versions, config, medians,
spreads, stages).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import statistics
import sys
import time

import jax
import numpy as np
from flax import nnx

import record
from aomni_jax.config import Config, load_config
from aomni_jax.inference.engine import AudioOmni, with_dtype, thinker_config
from aomni_jax.inference.pipeline import Request
from aomni_jax.models.conditioners import ConditionerHeads
from aomni_jax.models.dit import DiffusionTransformer
from aomni_jax.models.qwen_omni.config import QWEN25_OMNI_3B, ThinkerConfig
from aomni_jax.models.qwen_omni.thinker import Thinker
from aomni_jax.models.vae import OobleckVAE

ROOT = pathlib.Path(__file__).resolve().parents[1]
STAGES = ("qwen", "heads", "sampler", "vae")
TARGETS = {1: 1.6, 8: 1.35}  # seconds per clip, one H200 (issue 9)


class StandInTokenizer:
  """Maps any prompt to `length` fixed token ids (a real-length prompt without the vocab files)."""

  def __init__(self, length: int, vocab: int):
    self.ids = list(np.random.default_rng(0).integers(1000 % vocab, vocab, length))

  def __call__(self, texts, padding=False):
    return {"input_ids": [self.ids for _ in texts]}


def _init(factory):
  """A module with random weights, initialised by one compiled program on the default device."""
  return nnx.jit(factory)()


def build(cfg: Config, thinker_cfg: ThinkerConfig, prompt_tokens: int) -> AudioOmni:
  m = cfg.model
  tcfg = thinker_config(thinker_cfg, cfg)
  modules = [_init(lambda: ConditionerHeads(m, rngs=nnx.Rngs(0))),
             _init(lambda: DiffusionTransformer(m.dit, rngs=nnx.Rngs(1))),
             _init(lambda: OobleckVAE(m.vae, rngs=nnx.Rngs(2))),
             _init(lambda: Thinker(tcfg, rngs=nnx.Rngs(3)))]
  return AudioOmni(cfg, *modules, StandInTokenizer(prompt_tokens, tcfg.text.vocab_size),
                   source="random weights")


def bench_batch(model: AudioOmni, batch: int, steps: int, cfg_scale: float,
                repeats: int) -> dict:
  requests = [Request("T2A", prompt=f"rain on a tin roof, take {i}") for i in range(batch)]
  seeds = list(range(batch))
  length = model.prompt_length(requests)

  def run(on_stage=None):
    return model.generate_batch(requests, seeds, batch_size=batch, prompt_length=length,
                                steps=steps, cfg_scale=cfg_scale, on_stage=on_stage)

  start = time.perf_counter()
  audio = run()
  compile_s = time.perf_counter() - start
  finite = all(np.all(np.isfinite(a)) for a in audio)  # random weights: reported, not fatal
  totals = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    totals.append(time.perf_counter() - start)
  stages = {name: [] for name in STAGES}
  for _ in range(repeats):
    last = [time.perf_counter()]

    def timed(name, output):
      jax.block_until_ready(output)
      now = time.perf_counter()
      stages[name].append(now - last[0])
      last[0] = now

    run(timed)
  total = statistics.median(totals)
  stage_median = {name: statistics.median(t) for name, t in stages.items()}
  outside = max(0.0, 1.0 - stage_median["sampler"] / total)
  return {"what": f"end to end, batch {batch}, {steps} steps CFG {cfg_scale:g}, "
                  f"{length}-token prompt",
          "summary": f"{total:.3f} s ({total / batch:.3f} s/clip; DiT {stage_median['sampler']:.3f} s, "
                     f"outside the DiT {outside:.1%})",
          "batch": batch, "steps": steps, "cfg_scale": cfg_scale, "prompt_tokens": length,
          "finite_audio": finite,
          "compile_s": compile_s, "total_s": record.spread(totals), "per_clip_s": total / batch,
          "stages_s": {name: record.spread(t) for name, t in stages.items()},
          "dit_only_s": stage_median["sampler"],
          "outside_dit_fraction": outside}


def print_table(rows: list[dict], device: str) -> None:
  print(f"\ndevice: {device}")
  head = f"{'batch':>5}{'total s':>10}{'spread':>16}{'per clip':>10}{'DiT only':>10}"
  head += "".join(f"{s:>9}" for s in STAGES) + f"{'outside DiT':>13}{'target':>9}"
  print(head)
  for r in rows:
    t = r["total_s"]
    target = TARGETS.get(r["batch"])
    line = (f"{r['batch']:>5}{t['median']:>10.3f}{t['min']:>8.3f}–{t['max']:<7.3f}"
            f"{r['per_clip_s']:>10.3f}{r['dit_only_s']:>10.3f}")
    line += "".join(f"{r['stages_s'][s]['median']:>9.3f}" for s in STAGES)
    line += f"{100 * r['outside_dit_fraction']:>12.1f}%"
    line += f"{'≤ %.2f' % target if target else '':>9}"
    print(line + ("" if r["finite_audio"] else "  (non-finite audio from the random weights)"))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tiny", action="store_true", help="configs/tiny.py and a tiny thinker")
  parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
  parser.add_argument("--steps", type=int, default=None, help="default 100 (tiny: 2)")
  parser.add_argument("--cfg", type=float, default=7.0)
  parser.add_argument("--repeats", type=int, default=None, help="default 5 (tiny: 2)")
  parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"),
                      help="DiT and VAE numerics")
  parser.add_argument("--attention", default="auto", help="dit.attention (xla, cudnn, auto)")
  parser.add_argument("--prompt-tokens", type=int, default=96)
  args = parser.parse_args(argv)
  steps = args.steps or (2 if args.tiny else 100)
  repeats = args.repeats or (2 if args.tiny else 5)
  if args.tiny:
    sys.path.insert(0, str(ROOT))
    from benchmarks.qwen import TINY as thinker_cfg  # pylint: disable=import-outside-toplevel
    cfg = load_config(str(ROOT / "configs" / "tiny.py"))
  else:
    cfg, thinker_cfg = Config(), QWEN25_OMNI_3B
  cfg = with_dtype(cfg, args.dtype)
  cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dit=dataclasses.replace(
      cfg.model.dit, attention=args.attention)))
  model = build(cfg, thinker_cfg, args.prompt_tokens)
  device = jax.devices()[0].device_kind
  rows = [bench_batch(model, b, steps, args.cfg, repeats) for b in args.batches]
  print_table(rows, device)
  record.save("generate", rows, {
      "dtype": args.dtype, "attention": args.attention, "steps": steps, "cfg_scale": args.cfg,
      "repeats": repeats, "tiny": args.tiny, "prompt_tokens": args.prompt_tokens,
      "model": dataclasses.asdict(cfg.model)})
  return 0


if __name__ == "__main__":
  sys.exit(main())
