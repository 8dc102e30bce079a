"""The trainable conditioning heads and the high/low-level assembly (official_spec §3, §4).

Frozen feature extractors (the Qwen thinker, Synchformer) run elsewhere; these heads take their
outputs. Assembly: cross-attention tokens = [omni (pad_length); transcript (proj_seq_len)] with
mask [omni mask; ones], prepended tokens = [sync (out_seq_len); mel (seq_len)].
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from aomni_jax.audio.mel import log_mel_spectrogram
from aomni_jax.config import MelConfig, ModelConfig, OmniConfig, SyncConfig
from aomni_jax.layers.linear import Buffer, Dense
from aomni_jax.layers.norms import LayerNorm, rms_norm
from aomni_jax.models.dit import DiTConditioning
from aomni_jax.models.transcript import TranscriptEncoder

_RMS_EPS = 1e-6


def _over_time(dense: Dense, x: jax.Array) -> jax.Array:
  """Applies a Linear along the time axis of [B, T, C] (the official transpose-linear-transpose)."""
  return jnp.swapaxes(dense(jnp.swapaxes(x, 1, 2)), 1, 2)


# ---------------------------------------------------------------------------------------------
# Omni head: Qwen hidden states → tokens.

def round_to_bf16(x: jax.Array) -> jax.Array:
  """float32 → the nearest bfloat16 value (ties to even), still as float32.

  Done on the bit pattern because XLA may drop a float32→bf16→float32 round trip under jit
  (excess precision), which would silently skip the rounding PyTorch performs.
  """
  bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
  bits = bits + jnp.uint32(0x7FFF) + ((bits >> 16) & jnp.uint32(1))
  return jax.lax.bitcast_convert_type(bits & jnp.uint32(0xFFFF0000), jnp.float32)


def rms_norm_bf16(x: jax.Array, eps: float = _RMS_EPS) -> jax.Array:
  """Weightless RMSNorm as PyTorch runs it on a bf16 tensor: each op in fp32, rounded to bf16.

  square, mean (fp32 sum / N), + eps, 1/sqrt and the final multiply each round once; reproducing
  every rounding is what makes the projected tokens match to 1e-6 instead of ~1e-2. Takes and
  returns float32 arrays holding bf16 values.
  """
  x = round_to_bf16(x)
  mean_square = round_to_bf16(jnp.mean(round_to_bf16(x * x), axis=-1, keepdims=True))
  inv_rms = round_to_bf16(1.0 / jnp.sqrt(round_to_bf16(mean_square + eps)))
  return round_to_bf16(x * inv_rms)


def pack_qwen_features(hidden: jax.Array, attention_mask: jax.Array,
                       pad_length: int) -> tuple[jax.Array, jax.Array]:
  """Keeps the real tokens in order, fits them to `pad_length`; returns (features, mask).

  Longer sequences are resampled with two-point linear interpolation (align_corners=False, no
  antialiasing; weights in fp32, one bf16 rounding per output); shorter ones are right-padded
  with zeros. Features are float32 holding bf16 values ([B, P, F]); the mask is True for the
  first min(real_len, pad_length) rows.
  """
  valid = attention_mask.astype(bool)
  lengths = jnp.sum(valid, axis=1).astype(jnp.int32)
  order = jnp.argsort(~valid, axis=1, stable=True)  # real positions first, original order
  real = jnp.take_along_axis(round_to_bf16(hidden), order[..., None], axis=1)
  if real.shape[1] < pad_length:
    real = jnp.pad(real, ((0, 0), (0, pad_length - real.shape[1]), (0, 0)))
  rows = jnp.arange(pad_length)
  packed = jnp.where(rows[None, :, None] < lengths[:, None, None], real[:, :pad_length], 0)
  if real.shape[1] > pad_length:  # only then can an item be longer than pad_length
    scale = lengths.astype(jnp.float32)[:, None] / jnp.float32(pad_length)
    source = jnp.maximum((rows.astype(jnp.float32)[None] + 0.5) * scale - 0.5, 0.0)
    left = jnp.floor(source).astype(jnp.int32)
    right = jnp.minimum(left + 1, lengths[:, None] - 1)
    w_right = (source - left.astype(jnp.float32))[..., None]
    x_left = jnp.take_along_axis(real, left[..., None], axis=1)
    x_right = jnp.take_along_axis(real, right[..., None], axis=1)
    resampled = round_to_bf16((1.0 - w_right) * x_left + w_right * x_right)
    packed = jnp.where((lengths > pad_length)[:, None, None], resampled, packed)
  return packed, rows[None, :] < jnp.minimum(lengths, pad_length)[:, None]


class OmniHead(nnx.Module):
  """Qwen hidden states [B, L, F] + attention mask [B, L] → tokens [B, P, out], mask [B, P]."""

  def __init__(self, cfg: OmniConfig, *, rngs: nnx.Rngs):
    self.pad_length = cfg.pad_length
    self.proj = Dense(cfg.feature_dim, cfg.out_dim, rngs=rngs, axes=("embed", "cond"))

  def __call__(self, hidden: jax.Array, attention_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    packed, mask = pack_qwen_features(hidden, attention_mask, self.pad_length)
    return self.proj(rms_norm_bf16(packed)), mask


# ---------------------------------------------------------------------------------------------
# Mel head: log-mel → tokens.

def infill_mask(log_mel: jax.Array, is_tts: jax.Array, key: jax.Array, ratio_start: float,
                ratio_end: float) -> jax.Array:
  """F5-style training mask: zero one span of int(F·U(start, end)) frames of each TTS item.

  log_mel is [B, F, n_mels]; the span start is uniform over 0..F − len (inclusive).
  """
  frames = log_mel.shape[1]
  ratio_key, start_key = jax.random.split(key)
  ratios = jax.random.uniform(ratio_key, (log_mel.shape[0],), minval=ratio_start,
                              maxval=ratio_end)
  lengths = jnp.floor(frames * ratios).astype(jnp.int32)
  starts = jax.random.randint(start_key, lengths.shape, 0, frames - lengths + 1)
  t = jnp.arange(frames)[None, :]
  masked = (t >= starts[:, None]) & (t < (starts + lengths)[:, None]) & is_tts[:, None]
  return jnp.where(masked[..., None], 0.0, log_mel)


class MelHead(nnx.Module):
  """log-mel [B, num_frames, n_mels] → [B, seq_len, out] via a learned time projection."""

  def __init__(self, cfg: MelConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.seq_proj = Dense(cfg.num_frames, cfg.seq_len, rngs=rngs, axes=("length", None))
    self.proj = Dense(cfg.n_mels, cfg.out_dim, rngs=rngs, axes=(None, "cond"))
    # In the official checkpoint but never read by forward(); kept so conversion round-trips.
    self.empty_feature = Buffer(jnp.zeros((cfg.seq_len, cfg.out_dim), jnp.float32))

  def __call__(self, log_mel: jax.Array) -> jax.Array:
    if log_mel.shape[1:] != (self.cfg.num_frames, self.cfg.n_mels):
      raise ValueError(f"log-mel has shape {log_mel.shape[1:]}, the mel head needs "
                       f"({self.cfg.num_frames}, {self.cfg.n_mels}) = "
                       f"{self.cfg.window_seconds:g} s at {self.cfg.sample_rate} Hz")
    return rms_norm(self.proj(_over_time(self.seq_proj, log_mel)), eps=_RMS_EPS)


# ---------------------------------------------------------------------------------------------
# Sync head: Synchformer features → tokens.

class SyncHead(nnx.Module):
  """[B, seq_len, input_dim] → LayerNorm → Linear → Linear over time → [B, out_seq_len, out]."""

  def __init__(self, cfg: SyncConfig, *, rngs: nnx.Rngs):
    self.norm = LayerNorm(cfg.input_dim, rngs=rngs, eps=1e-5)
    self.proj = Dense(cfg.input_dim, cfg.out_dim, rngs=rngs, axes=("embed", "cond"),
                      kernel_init=jax.nn.initializers.zeros)
    self.seq_proj = Dense(cfg.seq_len, cfg.out_seq_len, rngs=rngs, axes=("length", None))

  def __call__(self, features: jax.Array) -> jax.Array:
    return _over_time(self.seq_proj, self.proj(self.norm(features.astype(jnp.float32))))


# ---------------------------------------------------------------------------------------------
# All heads + assembly.

class ConditionerInputs(NamedTuple):
  """Precomputed frozen features for one batch; give exactly one of `waveform` / `log_mel`."""

  qwen_hidden: jax.Array  # [B, L, qwen_dim], Qwen hidden_states[layer_idx] (cast to bf16 here)
  qwen_mask: jax.Array  # [B, L] processor attention mask (1 = real token, any padding side)
  transcript_ids: jax.Array  # [B, transcript.seq_len] int, 0 = filler (models.transcript.tokenize)
  has_transcript: jax.Array  # [B] bool
  sync_features: jax.Array  # [B, sync.seq_len, sync.input_dim]; zeros = no video
  waveform: jax.Array | None = None  # [B, num_samples] mono 44.1 kHz; zeros = no audio
  log_mel: jax.Array | None = None  # [B, num_frames, n_mels]
  is_tts: jax.Array | None = None  # [B] bool; only read by training-time infill masking


def assemble(omni: jax.Array, omni_mask: jax.Array, transcript: jax.Array, sync: jax.Array,
             mel: jax.Array) -> DiTConditioning:
  """§4: high-level = [omni; transcript] (cross-attention), low-level = [sync; mel] (prepended)."""
  transcript_mask = jnp.ones(transcript.shape[:2], bool)
  return DiTConditioning(cross_cond=jnp.concatenate([omni, transcript], axis=1),
                         cross_mask=jnp.concatenate([omni_mask.astype(bool), transcript_mask],
                                                    axis=1),
                         global_cond=jnp.concatenate([sync, mel], axis=1))


class ConditionerHeads(nnx.Module):
  """The trainable heads of every conditioner; `__call__` builds the DiT conditioning."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.mel_cfg = cfg.mel
    self.omni = OmniHead(cfg.omni, rngs=rngs)
    self.transcript = TranscriptEncoder(cfg.transcript, rngs=rngs)
    self.mel = MelHead(cfg.mel, rngs=rngs)
    self.sync = SyncHead(cfg.sync, rngs=rngs)

  def __call__(self, inputs: ConditionerInputs, *, train: bool = False,
               key: jax.Array | None = None) -> DiTConditioning:
    """`train=True` (with a `key`) applies the TTS infill mask to items flagged `is_tts`.

    As in the official code, a config with mask_ratio_start >= mask_ratio_end never masks.
    """
    if (inputs.waveform is None) == (inputs.log_mel is None):
      raise ValueError("ConditionerInputs needs exactly one of waveform and log_mel")
    log_mel = (log_mel_spectrogram(inputs.waveform, self.mel_cfg) if inputs.log_mel is None
               else inputs.log_mel)
    if train and self.mel_cfg.mask_ratio_start < self.mel_cfg.mask_ratio_end:
      if key is None or inputs.is_tts is None:
        raise ValueError("train=True needs a key and inputs.is_tts for the infill mask")
      log_mel = infill_mask(log_mel, inputs.is_tts, key, self.mel_cfg.mask_ratio_start,
                            self.mel_cfg.mask_ratio_end)
    omni, omni_mask = self.omni(inputs.qwen_hidden, inputs.qwen_mask)
    transcript = self.transcript(inputs.transcript_ids, inputs.has_transcript)
    return assemble(omni, omni_mask, transcript, self.sync(inputs.sync_features),
                    self.mel(log_mel))
