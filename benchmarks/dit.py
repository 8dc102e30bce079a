"""DiT speed and memory: 100-step CFG generation and a training step, at the real 3.04 B size.

Compared with the official PyTorch code on one H100 (shared/design/official_speed_h100.md):
one clip 7.9 s (median of sample_rf runs), 8 clips 3.41 s per clip, training step at batch 8
604 ms (25.9 % MFU against the measured 798 TFLOP/s bf16 matmul peak).

    python benchmarks/dit.py                  # GPU, full size
    python benchmarks/dit.py --tiny           # CPU smoke run
    python benchmarks/dit.py --only train --remat none dots_no_batch

Weights are random (never zero, as in the official measurement). MFU uses model FLOPs of the
official computation (official_spec §9); the cached-context path executes fewer FLOPs than that,
which is the point of it, so its "effective" TFLOP/s can exceed what the hardware executes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import record
from aomni_jax import flow
from aomni_jax.config import Config, DiTConfig, FlowConfig, ModelConfig, apply_overrides
from aomni_jax.models.dit import DiffusionTransformer, DiTConditioning
from aomni_jax.sampling import sample
from aomni_jax.train.metrics import dit_flops

MEASURED_PEAK_TFLOPS = 798.1  # torch bf16 8192³ matmul on the H100 of the official measurement
OFFICIAL = {"infer_1": 7.86, "infer_8_per_clip": 3.41, "train_8_ms": 604.1}

FULL = dict(latent=236, prepend=364, context=2304, qwen_valid=(1, 2048))
TINY = dict(latent=24, prepend=12, context=40, qwen_valid=(1, 32))


def random_params(cfg: DiTConfig, seed: int = 0):
  """Builds the model on device and fills every variable with N(0, (0.5/√fan_in)²) values."""
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: DiffusionTransformer(cfg,
                                                                           rngs=nnx.Rngs(0))))

  @jax.jit
  def init(key):
    leaves, tree = jax.tree.flatten(abstract)
    keys = jax.random.split(key, len(leaves))
    out = []
    for k, leaf in zip(keys, leaves):
      fan_in = leaf.shape[-2] if len(leaf.shape) >= 2 else 1
      std = 0.5 / np.sqrt(fan_in) if len(leaf.shape) >= 2 else 0.02
      base = 1.0 if len(leaf.shape) == 2 and leaf.shape[0] == cfg.depth else 0.0  # norm scales
      out.append((base + std * jax.random.normal(k, leaf.shape, jnp.float32)).astype(leaf.dtype))
    return jax.tree.unflatten(tree, out)

  return graphdef, init(jax.random.key(seed))


def conditioning(key, batch: int, shape: dict, cfg: DiTConfig) -> DiTConditioning:
  """Random context with a random valid Qwen prefix plus 256 (or 8) always-valid tokens."""
  k1, k2, k3 = jax.random.split(key, 3)
  ctx, qwen_max = shape["context"], shape["qwen_valid"][1]
  valid = jax.random.randint(k3, (batch,), shape["qwen_valid"][0], qwen_max + 1)
  pos = jnp.arange(ctx)[None, :]
  mask = (pos < valid[:, None]) | (pos >= qwen_max)
  return DiTConditioning(jax.random.normal(k1, (batch, ctx, cfg.cond_token_dim)), mask,
                         jax.random.normal(k2, (batch, shape["prepend"], cfg.global_cond_dim)))


def peak_memory_gib() -> float:
  """Peak device memory of this process so far (rows run smallest first)."""
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use", 0) / 2**30


def make_generation(cfg: DiTConfig, shape: dict, clips: int, steps: int,
                    cached: bool) -> Callable[[float], jax.Array]:
  """A random-weight model and inputs; returns run(cfg_scale) → latents (blocks until done)."""
  graphdef, state = random_params(cfg)
  cond = conditioning(jax.random.key(1), clips, shape, cfg)
  noise = jax.random.normal(jax.random.key(2), (clips, shape["latent"], cfg.io_channels))
  return lambda scale: jax.block_until_ready(sample(graphdef, state, noise, cond, steps=steps,
                                                    cfg_scale=scale, cached_context=cached))


def make_train_step(cfg: DiTConfig, shape: dict, batch: int,
                    cast_once: bool = False) -> Callable[[jax.Array], jax.Array]:
  """DiT-only step: rectified-flow loss, fp32 master weights, bf16 compute, AdamW, donated.

  Returns run(key) → loss (blocks until done); the state lives in the closure.
  `cast_once`: cast the matrices to bf16 once per step, before the layer scan, instead of per
  layer (forward and backward); gradients still flow back to the fp32 masters.
  """
  graphdef, params = random_params(cfg)
  tx = optax.adamw(1e-5, weight_decay=1e-3)
  state = [params, jax.jit(tx.init)(params)]
  cond = conditioning(jax.random.key(1), batch, shape, cfg)
  x0 = jax.random.normal(jax.random.key(2), (batch, shape["latent"], cfg.io_channels))
  flow_cfg = FlowConfig(cfg_dropout_prob=0.1)

  def step(params, opt_state, key):
    def loss_fn(p):
      if cast_once:
        p = jax.tree.map(lambda a: a.astype(jnp.bfloat16) if a.ndim >= 2 else a, p)
      model = nnx.merge(graphdef, p)
      loss, _ = flow.rectified_flow_loss(lambda x, t, c: model(x, t, *c), x0, cond, key,
                                         flow_cfg)
      return loss
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(step, donate_argnums=(0, 1))

  def run(key: jax.Array) -> jax.Array:
    state[0], state[1], loss = jax.block_until_ready(step(*state, key))
    return loss

  return run


def _timed(fn: Callable, args: list) -> tuple[float, list[float], object]:
  """(first-call seconds, seconds of each later call, last result)."""
  start = time.perf_counter()
  out = fn(args[0])
  first = time.perf_counter() - start
  times = []
  for arg in args[1:]:
    start = time.perf_counter()
    out = fn(arg)
    times.append(time.perf_counter() - start)
  return first, times, out


def bench_inference(cfg: DiTConfig, shape: dict, clips: int, steps: int, cached: bool,
                    repeats: int) -> dict:
  run = make_generation(cfg, shape, clips, steps, cached)
  # a new scale each call: no recompilation
  compile_s, times, out = _timed(run, [7.0 - 0.5 * i for i in range(repeats + 1)])
  assert np.all(np.isfinite(np.asarray(out, np.float32))), "non-finite latents"
  total = statistics.median(times)
  flops = 2 * clips * steps * dit_flops(cfg, shape["latent"], shape["prepend"], shape["context"])
  tag = "" if cfg.scan_layers else " unrolled"
  what = f"generate {clips} clip(s), {steps} steps, {'cached' if cached else 'plain'}{tag}"
  summary = (f"{total:.3f} s ({total / clips:.3f} s/clip, {1e3 * total / steps:.2f} ms/step), "
             f"{flops / total / 1e12:.0f} TFLOP/s in official-code FLOPs, "
             f"{OFFICIAL['infer_1' if clips == 1 else 'infer_8_per_clip'] / (total / clips):.2f}× official")
  return dict(what=what, summary=summary, kind="generate", tag=tag, clips=clips, steps=steps,
              path="cached" if cached else "plain",
              total_s=total, per_clip_s=total / clips, step_ms=1e3 * total / steps,
              compile_s=compile_s, tflops=flops / total / 1e12,
              mfu=flops / total / 1e12 / MEASURED_PEAK_TFLOPS, peak_gib=peak_memory_gib())


def bench_train(cfg: DiTConfig, shape: dict, batch: int, repeats: int,
                cast_once: bool = False) -> dict:
  run = make_train_step(cfg, shape, batch, cast_once)
  compile_s, times, loss = _timed(run, [jax.random.key(i) for i in range(repeats + 1)])
  assert np.isfinite(float(loss)), "non-finite loss"
  ms = 1e3 * statistics.median(times)
  flops = 3 * batch * dit_flops(cfg, shape["latent"], shape["prepend"], shape["context"])
  tag = (" cast-once" if cast_once else "") + ("" if cfg.scan_layers else " unrolled")
  what = f"train step batch {batch}, remat {cfg.remat}{tag}"
  summary = (f"{ms:.1f} ms, {flops / ms * 1e3 / 1e12 / MEASURED_PEAK_TFLOPS:.0%} MFU, "
             f"{OFFICIAL['train_8_ms'] * batch / 8 / ms:.2f}× official")
  return dict(what=what, summary=summary, kind="train", tag=tag, batch=batch, remat=cfg.remat,
              step_ms=ms, compile_s=compile_s,
              tflops=flops / ms * 1e3 / 1e12,
              mfu=flops / ms * 1e3 / 1e12 / MEASURED_PEAK_TFLOPS, peak_gib=peak_memory_gib())


def base_config(tiny: bool, overrides: list[str]) -> tuple[DiTConfig, dict]:
  """(DiT config, sequence shape): the real size or a CPU-sized model, plus `KEY=VALUE` overrides."""
  if tiny:
    base, shape = DiTConfig(io_channels=8, embed_dim=64, depth=2, num_heads=2,
                            cond_token_dim=16, global_cond_dim=16), TINY
  else:
    base, shape = DiTConfig(), FULL
  base = apply_overrides(Config(model=ModelConfig(dit=base)),
                         [f"dit.{kv}" for kv in overrides]).model.dit
  return base, shape


def print_table(rows: list[dict]) -> None:
  print(f"\ndevice: {jax.devices()[0].device_kind}  (MFU vs {MEASURED_PEAK_TFLOPS} TFLOP/s)")
  print(f"{'what':<34}{'time':>14}{'per clip':>11}{'TFLOP/s':>9}{'MFU':>7}{'peak GiB':>10}"
        f"{'vs official':>13}")
  for r in rows:
    if "error" in r:
      print(f"{r['what']:<34} ERROR {r['error'][:90]}")
    elif r["kind"] == "generate":
      what = f"generate {r['clips']} clip(s) {r['steps']} st {r['path']}{r.get('tag', '')}"
      ref = OFFICIAL["infer_1"] if r["clips"] == 1 else OFFICIAL["infer_8_per_clip"]
      print(f"{what:<34}{r['total_s']:>12.3f} s{r['per_clip_s']:>9.3f} s{r['tflops']:>9.1f}"
            f"{100 * r['mfu']:>6.1f}%{r['peak_gib']:>10.2f}{ref / r['per_clip_s']:>12.2f}x")
    else:
      what = f"train b{r['batch']} {r['remat']}{r.get('tag', '')}"
      print(f"{what:<34}{r['step_ms']:>11.1f} ms{'':>11}{r['tflops']:>9.1f}"
            f"{100 * r['mfu']:>6.1f}%{r['peak_gib']:>10.2f}"
            f"{OFFICIAL['train_8_ms'] * r['batch'] / 8 / r['step_ms']:>12.2f}x")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--tiny", action="store_true", help="small model on CPU")
  parser.add_argument("--only", choices=("generate", "train"), default=None)
  parser.add_argument("--clips", type=int, nargs="*", default=[1, 8])
  parser.add_argument("--paths", nargs="*", default=["cached", "plain"])
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--train-batch", type=int, nargs="*", default=[8])
  parser.add_argument("--remat", nargs="*", default=["none", "dots_no_batch", "full"])
  parser.add_argument("--cast-once", action="store_true",
                      help="bf16 weight copy made once per training step")
  parser.add_argument("--attention", default=None)
  parser.add_argument("--dit", nargs="*", default=[], metavar="KEY=VALUE",
                      help="DiTConfig overrides, e.g. scan_layers=False")
  args = parser.parse_args(argv)
  base, shape = base_config(args.tiny, args.dit)
  repeats = 1 if args.tiny else 3
  if args.tiny:
    args.steps = min(args.steps, 4)
  attention = args.attention or ("xla" if args.tiny else "cudnn")
  rows = []

  def attempt(what, fn):
    try:
      rows.append(fn())
    except Exception as e:  # report and go on: one OOM must not hide the other rows
      rows.append(dict(what=what, error=f"{type(e).__name__}: {e}".replace("\n", " ")))
    print(json.dumps(rows[-1]), flush=True)

  if args.only in (None, "generate"):
    infer_cfg = dataclasses.replace(base, dtype="bfloat16", param_dtype="bfloat16",
                                    attention=attention)
    for clips in args.clips:
      for path in args.paths:
        attempt(f"generate {clips} {path}",
                lambda c=clips, p=path: bench_inference(infer_cfg, shape, c, args.steps,
                                                        p == "cached", repeats))
  if args.only in (None, "train"):
    for remat in args.remat:
      for batch in args.train_batch:
        train_cfg = dataclasses.replace(base, dtype="bfloat16", param_dtype="float32",
                                        attention=attention, remat=remat)
        attempt(f"train {batch} {remat}",
                lambda b=batch, c=train_cfg: bench_train(c, shape, b, max(repeats, 3),
                                                         args.cast_once))
  print_table(rows)
  record.save("dit", rows, dict(vars(args), attention=attention, dit=dataclasses.asdict(base),
                                shape=shape, peak_tflops=MEASURED_PEAK_TFLOPS))
  return 0


if __name__ == "__main__":
  sys.exit(main())
