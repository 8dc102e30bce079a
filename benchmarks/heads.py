"""Conditioning heads' speed: transcript encoder, log-mel + mel head, sync head, omni head.

Forward time per batch (default 8) at the real sizes, each head jitted on its own, with random
weights and inputs shaped as at inference (10 s mel window, 240 Synchformer tokens, 2048 Qwen
tokens of which a random prefix is valid, transcripts of ~200 symbols).

    python benchmarks/heads.py              # accelerator, real sizes, batch 8
    python benchmarks/heads.py --tiny       # CPU smoke run in seconds
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from aomni_jax.audio.mel import log_mel_spectrogram
from aomni_jax.config import MelConfig, ModelConfig, OmniConfig, SyncConfig, TranscriptConfig
from aomni_jax.models.conditioners import MelHead, OmniHead, SyncHead
from aomni_jax.models.transcript import TranscriptEncoder

TINY = ModelConfig(
    transcript=TranscriptConfig(text_dim=32, conv_layers=1, seq_len=128, proj_seq_len=16,
                                out_dim=64),
    mel=MelConfig(num_frames=173, seq_len=16, out_dim=64, window_seconds=1.0),
    sync=SyncConfig(input_dim=32, seq_len=16, out_seq_len=8, out_dim=64),
    omni=OmniConfig(feature_dim=64, pad_length=128, out_dim=64))


def _timed(fn: Callable, args: tuple, repeats: int) -> float:
  """Median wall milliseconds of `fn(*args)` after one compile-and-run call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append((time.perf_counter() - start) * 1e3)
  return statistics.median(times)


def _build(make: Callable[[], nnx.Module]):
  return nnx.split(nnx.jit(make)())


def _cases(cfg: ModelConfig, batch: int, key: jax.Array) -> dict[str, tuple]:
  """name → (jitted fn(state, *inputs), state, inputs, shapes text, model FLOPs)."""
  keys = jax.random.split(key, 6)
  t, m, s, o = cfg.transcript, cfg.mel, cfg.sync, cfg.omni
  out = {}

  graphdef, state = _build(lambda: TranscriptEncoder(t, rngs=nnx.Rngs(0)))
  length = min(200, t.seq_len)
  ids = jnp.where(jnp.arange(t.seq_len) < length,
                  jax.random.randint(keys[0], (batch, t.seq_len), 1, t.vocab_size + 1), 0)
  # 2·MACs: depthwise conv (7 per channel) + two pointwise layers, then the two projections.
  macs = t.seq_len * t.conv_layers * (7 * t.text_dim + 2 * t.conv_mult * t.text_dim ** 2)
  macs += t.seq_len * t.text_dim * t.out_dim + t.out_dim * t.seq_len * t.proj_seq_len
  flops = 2 * batch * macs
  out["transcript"] = (jax.jit(lambda st, i, h: nnx.merge(graphdef, st)(i, h)), state,
                       (ids, jnp.ones((batch,), bool)), f"ids [{batch},{t.seq_len}]", flops)

  graphdef_m, state_m = _build(lambda: MelHead(m, rngs=nnx.Rngs(0)))
  wave = 0.1 * jax.random.normal(keys[1], (batch, m.num_samples))
  frames, bins = m.num_frames, m.n_fft // 2 + 1
  # filterbank + time projection + feature projection (the FFT is not counted)
  flops = 2 * batch * m.n_mels * (frames * bins + frames * m.seq_len + m.seq_len * m.out_dim)
  out["mel (log-mel + head)"] = (
      jax.jit(lambda st, w: nnx.merge(graphdef_m, st)(log_mel_spectrogram(w, m))), state_m,
      (wave,), f"wave [{batch},{m.num_samples}]", flops)

  graphdef_s, state_s = _build(lambda: SyncHead(s, rngs=nnx.Rngs(0)))
  feats = jax.random.normal(keys[2], (batch, s.seq_len, s.input_dim))
  flops = 2 * batch * s.seq_len * s.out_dim * (s.input_dim + s.out_seq_len)
  out["sync"] = (jax.jit(lambda st, f: nnx.merge(graphdef_s, st)(f)), state_s, (feats,),
                 f"feats [{batch},{s.seq_len},{s.input_dim}]", flops)

  graphdef_o, state_o = _build(lambda: OmniHead(o, rngs=nnx.Rngs(0)))
  hidden = jax.random.normal(keys[3], (batch, o.pad_length, o.feature_dim)).astype(jnp.bfloat16)
  valid = jax.random.randint(keys[4], (batch, 1), 1, o.pad_length + 1)
  mask = (jnp.arange(o.pad_length)[None] >= o.pad_length - valid).astype(jnp.int32)  # left pad
  flops = 2 * batch * o.pad_length * o.feature_dim * o.out_dim
  out["omni"] = (jax.jit(lambda st, h, k: nnx.merge(graphdef_o, st)(h, k)), state_o,
                 (hidden, mask), f"hidden [{batch},{o.pad_length},{o.feature_dim}]", flops)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--tiny", action="store_true", help="CPU-sized heads")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  cfg = TINY if args.tiny else ModelConfig()
  device = jax.devices()[0]
  print(f"device: {device.device_kind} ({jax.default_backend()}), batch {args.batch}, fp32")
  print(f"{'head':<22} {'input':<28} {'median ms':>10} {'TFLOP/s':>8} {'peak MiB':>9}")
  for name, (fn, state, inputs, shapes, flops) in _cases(cfg, args.batch,
                                                          jax.random.key(0)).items():
    ms = _timed(fn, (state, *inputs), args.repeats)
    stats = device.memory_stats() or {}
    peak = stats.get("peak_bytes_in_use", 0) / 2 ** 20
    print(f"{name:<22} {shapes:<28} {ms:>10.3f} {flops / ms / 1e9:>8.2f} "
          f"{peak if peak else float('nan'):>9.1f}")


if __name__ == "__main__":
  main()
