"""Training metrics: an analytic FLOP count (for MFU) and a TensorBoard writer that lags one step.

FLOPs follow official_spec §9: 2 FLOPs per multiply-accumulate, element-wise work, softmax and
norms ignored, training = 3 × forward. At the full size that is 5.198 TFLOP per forward and
15.59 TFLOP per training sample.

The writer never blocks the host on the step it just dispatched: it keeps the device metrics of
step n and converts them to Python numbers when step n + 1 has been dispatched (MaxText's
"log one step late"), so the input pipeline keeps running while the device works.
"""

from __future__ import annotations

import time
from typing import Any

import jax

from aomni_jax.config import Config, DiTConfig

# Dense bf16 peak TFLOP/s per device, by (lower-case) substring of `device_kind`; first match wins.
PEAK_TFLOPS = (
    ("h200", 989.4), ("h100", 989.4), ("gh200", 989.4), ("a100", 312.0), ("l4", 121.0),
    ("tpu v6", 918.0), ("tpu7", 2307.0), ("tpu v5p", 459.0), ("tpu v5 lite", 197.0),
    ("tpu v5e", 197.0), ("tpu v5", 459.0), ("tpu v4", 275.0),
)


def dit_flops(cfg: DiTConfig, latent_len: int, prepend_len: int, context_len: int) -> float:
  """FLOPs of one DiT forward for one sample (official_spec §9)."""
  d, n = cfg.embed_dim, latent_len + prepend_len
  # qkv 3d², self out d², cross q d², cross out d², SwiGLU in 2·mult·d², out mult·d² (MACs/token).
  token_macs = (6 + 3 * cfg.ff_mult) * d * d
  per_block = (2 * n * token_macs
               + 2 * context_len * 2 * d * d  # cross-attention K/V projection
               + 4 * n * n * d  # self-attention scores + AV
               + 4 * n * context_len * d)  # cross-attention scores + AV
  outside = (2 * context_len * (cfg.cond_token_dim * d + d * d)  # to_cond MLP
             + 2 * prepend_len * (cfg.global_cond_dim * d + d * d)  # to_global MLP
             + 2 * (cfg.timestep_features_dim * d + d * d)  # timestep MLP
             + 2 * latent_len * cfg.io_channels * d * 2  # project_in, project_out
             + 2 * 2 * latent_len * cfg.io_channels ** 2)  # 1x1 pre/post convs
  return float(cfg.depth * per_block + outside)


def sequence_lengths(config: Config) -> tuple[int, int, int]:
  """(latent, prepended, context) token counts of one training example for this config."""
  model = config.model
  prepend = model.sync.out_seq_len + model.mel.seq_len
  context = model.omni.pad_length + model.transcript.proj_seq_len
  return model.latent_length, prepend, context


def train_flops_per_example(config: Config) -> float:
  """Model FLOPs of one training example (forward + backward = 3 × forward)."""
  return 3.0 * dit_flops(config.model.dit, *sequence_lengths(config))


def peak_tflops(device: jax.Device, override: float = 0.0) -> float | None:
  """Peak dense bf16 TFLOP/s of `device`, or None when unknown (e.g. CPU)."""
  if override > 0:
    return override
  kind = device.device_kind.lower()
  for name, tflops in PEAK_TFLOPS:
    if name in kind:
      return tflops
  return None


class MetricLogger:
  """Reads every step's metrics one step late; writes TensorBoard scalars (process 0 only) every
  `log_every` steps and for every non-finite step."""

  def __init__(self, logdir: str | None, flops_per_example: float, examples_per_step: int,
               peak_tflops_total: float | None, log_every: int = 1):
    self._writer = None
    if logdir and jax.process_index() == 0:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._writer = SummaryWriter(logdir)
    self._log_every = max(log_every, 1)
    self._flops = flops_per_example
    self._examples = examples_per_step
    self._peak = peak_tflops_total
    self._pending: tuple[dict[str, Any], float] | None = None
    self._last_time: float | None = None
    self.last: dict[str, float] = {}

  def push(self, metrics: dict[str, Any]) -> dict[str, float] | None:
    """Queues this step's (device) metrics; returns the previous step's, now materialised."""
    now = time.perf_counter()
    previous = self._pending
    self._pending = (metrics, now)
    return self._materialise(previous, now) if previous else None

  def flush(self) -> dict[str, float] | None:
    """Materialises the queued step (blocks on it); call at the end or before stopping."""
    previous, self._pending = self._pending, None
    result = self._materialise(previous, time.perf_counter()) if previous else None
    if self._writer is not None:
      self._writer.flush()
    return result

  def _materialise(self, entry: tuple[dict[str, Any], float], now: float) -> dict[str, float]:
    metrics, dispatched = entry
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    # Time between consecutive dispatches ≈ step time once the pipeline is full.
    elapsed = dispatched - self._last_time if self._last_time is not None else None
    self._last_time = dispatched
    if elapsed and elapsed > 0:
      values["examples_per_s"] = self._examples / elapsed
      values["step_time_s"] = elapsed
      values["model_tflops_per_s"] = values["examples_per_s"] * self._flops / 1e12
      if self._peak:
        values["mfu"] = values["model_tflops_per_s"] / self._peak
    step = int(values.pop("step"))
    if self._writer is not None and (step % self._log_every == 0 or values.get("nonfinite")):
      for name, value in values.items():
        self._writer.add_scalar(f"train/{name}", value, step)
    self.last = {"step": step, **values}
    return self.last

  def add_scalars(self, values: dict[str, float], step: int) -> None:
    """Writes scalars under their own tags (e.g. "eval/loss") and flushes them."""
    if self._writer is not None:
      for tag, value in values.items():
        self._writer.add_scalar(tag, value, step)
      self._writer.flush()

  def add_text(self, tag: str, text: str, step: int) -> None:
    if self._writer is not None:
      self._writer.add_text(tag, text, step)

  def add_audio(self, tag: str, audio: Any, step: int, sample_rate: int) -> None:
    if self._writer is not None:
      self._writer.add_audio(tag, audio, step, sample_rate=sample_rate)

  def close(self) -> None:
    self.flush()
    if self._writer is not None:
      self._writer.close()
