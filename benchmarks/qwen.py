"""Qwen2.5-Omni thinker speed: penultimate-layer features for one prompt, and decode tokens/s.

Random weights at the real 3B size (bf16 by default). Features run decoder layers 0..L−2 only
(Audio-Omni's `layer_idx=-2`), no padding mask (so the cudnn backend applies). Decode runs the
jitted `generate` (static KV cache) with no stop token, at each batch size.

  python benchmarks/qwen.py                       # H100: features @2048 + decode @B=1,8
  python benchmarks/qwen.py --attention cudnn
  python benchmarks/qwen.py --tiny                # CPU smoke run in seconds
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import record
from aomni_jax.models.qwen_omni.config import (QWEN25_OMNI_3B, AudioConfig, TextConfig,
                                               ThinkerConfig, VisionConfig)
from aomni_jax.models.qwen_omni.generate import generate
from aomni_jax.models.qwen_omni.thinker import Thinker, ThinkerInputs, resolve_layer_index

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0}

TINY = ThinkerConfig(
    text=TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=3,
                    num_heads=4, num_kv_heads=2, head_dim=16, mrope_section=(2, 3, 3)),
    audio=AudioConfig(num_layers=1, num_heads=2, ffn_dim=64, d_model=32, output_dim=64),
    vision=VisionConfig(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                        fullatt_block_indexes=(0,), out_hidden_size=64),
    eos_token_id=1, pad_token_id=0)


def text_flops(cfg: ThinkerConfig, tokens: int, layers: int) -> float:
  """Matmul FLOPs (2 per multiply-add) of `layers` decoder layers over one causal sequence."""
  t = cfg.text
  q, kv = t.num_heads * t.head_dim, t.num_kv_heads * t.head_dim
  per_token = t.hidden_size * (2 * q + 2 * kv) + 3 * t.hidden_size * t.intermediate_size
  attention = 2 * t.num_heads * t.head_dim * tokens * tokens  # QKᵀ and PV, causal half of 4·
  return layers * (2.0 * per_token * tokens + attention)


def _inputs(cfg: ThinkerConfig, batch: int, length: int, with_mask: bool) -> ThinkerInputs:
  rng = np.random.default_rng(0)
  ids = rng.integers(1000 % cfg.text.vocab_size, cfg.text.vocab_size, (batch, length))
  positions = np.broadcast_to(np.arange(length), (3, batch, length)).astype(np.int32)
  mask = np.ones((batch, length), np.int32) if with_mask else None
  return ThinkerInputs(jnp.asarray(ids, jnp.int32), mask, jnp.asarray(positions))


def _median_ms(fn, repeats: int) -> float:
  return record.time_calls(fn, repeats)["median"]


def _peak_gib() -> str:
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return "n/a" if peak is None else f"{peak / 2**30:.2f}"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tiny", action="store_true", help="tiny config on CPU")
  parser.add_argument("--tokens", type=int, default=2048, help="feature prompt length")
  parser.add_argument("--layer-idx", type=int, default=-2)
  parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="decode batch sizes")
  parser.add_argument("--prompt", type=int, default=128, help="decode prompt length")
  parser.add_argument("--new-tokens", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
  parser.add_argument("--attention", default="auto", choices=("auto", "xla", "cudnn"))
  args = parser.parse_args()
  base = TINY if args.tiny else QWEN25_OMNI_3B
  if args.tiny:
    args.tokens, args.prompt, args.new_tokens, args.repeats = 64, 16, 8, 3
  cfg = dataclasses.replace(base, dtype=args.dtype, param_dtype=args.dtype,
                            attention=args.attention)
  model = Thinker(cfg, rngs=nnx.Rngs(0))
  device = jax.devices()[0].device_kind
  peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device), None)
  print(f"device: {device} | dtype {args.dtype} | attention {args.attention}")
  print(f"{'what':<28}{'shape':<22}{'median ms':>11}{'TFLOP/s':>10}{'MFU':>7}{'tok/s':>10}"
        f"{'peak GiB':>10}")

  layers = resolve_layer_index(args.layer_idx, cfg.text.num_layers)
  graphdef, state = nnx.split(model)
  features = jax.jit(lambda s, x: nnx.merge(graphdef, s).features(x, layer_idx=args.layer_idx))
  inputs = _inputs(cfg, 1, args.tokens, with_mask=False)
  ms = _median_ms(lambda: features(state, inputs), args.repeats)
  tflops = text_flops(cfg, args.tokens, layers) / (ms * 1e-3) / 1e12
  mfu = f"{tflops / peak:.0%}" if peak and args.dtype == "bfloat16" else "-"
  print(f"{f'features layer_idx={args.layer_idx}':<28}{f'1x{args.tokens}':<22}{ms:>11.2f}"
        f"{tflops:>10.1f}{mfu:>7}{'-':>10}{_peak_gib():>10}")
  rows = [dict(what=f"thinker hidden_states[{args.layer_idx}], {args.tokens} tokens",
               summary=f"{ms:.2f} ms ({tflops:.0f} TFLOP/s), attention {args.attention}",
               median_ms=ms, tflops=tflops)]

  for batch in args.batches:
    prompt = _inputs(cfg, batch, args.prompt, with_mask=True)
    run = lambda n: generate(model, prompt, max_new_tokens=n, stop_ids=())
    prefill_ms = _median_ms(lambda: run(1), args.repeats)
    total_ms = _median_ms(lambda: run(args.new_tokens), max(1, args.repeats // 3))
    per_token = (total_ms - prefill_ms) / (args.new_tokens - 1)
    print(f"{'decode (greedy, KV cache)':<28}{f'{batch}x{args.prompt}+{args.new_tokens}':<22}"
          f"{per_token:>11.2f}{'-':>10}{'-':>7}{batch * 1e3 / per_token:>10.0f}{_peak_gib():>10}")
    rows.append(dict(what=f"greedy decode, batch {batch}, {args.prompt}+{args.new_tokens} tokens",
                     summary=f"{batch * 1e3 / per_token:.0f} tok/s ({per_token:.2f} ms/step)",
                     ms_per_step=per_token, tokens_per_s=batch * 1e3 / per_token))
  record.save("qwen", rows, vars(args))


if __name__ == "__main__":
  main()
