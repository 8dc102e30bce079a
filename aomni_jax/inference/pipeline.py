"""End-to-end inference for every task: inputs → Qwen features → heads → sampler → VAE → audio.

Tasks: T2A, T2M, V2A, V2M, TTS (with or without a voice prompt = voice cloning), and the editing
tasks Add / Remove / Extract / Style Transfer. Inputs are prepared as the official API does
(official_spec §2.3): the mel path gets mono 44.1 kHz audio of exactly 10 s (zeros when the task
has none), sync features are zeros without a video, a missing transcript is None. The Qwen thinker
is not called here: pass its features precomputed or as a callable (see `QwenFeatures`).

Deliberate differences from the official Python API (official_spec §11):
  * P1: a TTS voice prompt is prepared the Gradio way (its last 6 s, zero-padded to 10 s); the API
    truncates to 6 s without padding and then crashes in the mel projection. Likewise an editing
    source shorter than 10 s is zero-padded instead of crashing.
  * P2: the mel is never masked at inference; the API zeroes 70–100 % of a TTS voice prompt's mel
    at random because it never freezes that conditioner (masking is training-only here).
  * Audio at another sample rate is resampled with a polyphase filter (torchaudio uses a windowed
    sinc), so resampled inputs agree closely but not bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.audio.dsp import resample
from aomni_jax.config import Config, MelConfig, ModelConfig
from aomni_jax.models import registry
from aomni_jax.models.conditioners import ConditionerHeads, ConditionerInputs
from aomni_jax.models.dit import DiffusionTransformer, DiTConditioning
from aomni_jax.models.transcript import tokenize
from aomni_jax.models.vae import OobleckVAE
from aomni_jax.sampling import sample
from aomni_jax.solvers import grid_from_config
from aomni_jax.text import prompts

VOICE_PROMPT_SECONDS = 6.0  # Gradio keeps the last 6 s of a voice prompt
MAX_SECONDS = 600.0  # longest clip a request may ask for (long-form windows)
VIDEO_TASKS = ("V2A", "V2M")
_MAX_CHANNELS = 16  # more "channels" than this means the array is [samples, channels]


@dataclasses.dataclass(frozen=True)
class Request:
  """One generation or editing call.

  `prompt` is the description (T2A/T2M/V2A/V2M), the transcript to speak (TTS) or the sound to
  add/remove/extract (editing); Style Transfer uses `source`/`target`. `audio` ([samples] or
  [channels, samples] at `sample_rate`) is the editing source or the TTS voice prompt, whose
  transcript is `reference_text`. V2A/V2M take a `video` file (decoded by `inference.video`
  into `sync_features` [240, 768] and the Qwen `video_frames` [50, 224, 224, 3] uint8) or, from
  Python, those two directly (without frames Qwen sees the prompt text only, as the official
  code does when the video cannot be read). `seconds` is the output duration
  (None: one model window, untrimmed, as the official API; an edit: the source's duration).
  """

  task: str
  prompt: str = ""
  source: str = ""
  target: str = ""
  audio: np.ndarray | None = None
  sample_rate: int | None = None
  reference_text: str | None = None
  sync_features: np.ndarray | None = None
  video: str | None = None
  seconds: float | None = None
  video_frames: np.ndarray | None = None

  def __post_init__(self):
    if self.task not in prompts.GENERATION_TASKS + prompts.EDIT_TASKS:
      raise ValueError(f"task {self.task!r} is not one of "
                       f"{prompts.GENERATION_TASKS + prompts.EDIT_TASKS}")
    if self.task in prompts.EDIT_TASKS and self.audio is None:
      raise ValueError(f"task {self.task!r} needs the source audio (Request.audio)")
    if self.seconds is not None and not 0 < self.seconds <= MAX_SECONDS:
      raise ValueError(f"seconds={self.seconds}: expected 0 < seconds <= {MAX_SECONDS}")


@dataclasses.dataclass(frozen=True)
class QwenPrompt:
  """What the Qwen processor receives for one item: the prompt string and the video, if any."""

  text: str
  video: np.ndarray | None = None


# prompts → (hidden_states[layer_idx] [B, L, F], attention mask [B, L]); any padding side.
QwenFeatures = Callable[[Sequence[QwenPrompt]], tuple[np.ndarray, np.ndarray]]


def thinker_features(thinker, processor, layer_idx: int = -2) -> QwenFeatures:
  """QwenFeatures over our JAX thinker (`models.qwen_omni`), called as OmniConditioner calls Qwen.

  The HF processor tokenises the prompts (left padding) and patchifies the videos; all-zero
  videos are dropped first, as the official conditioner does. `hidden_states[layer_idx]` comes
  from one jitted call per batch shape.
  """
  from aomni_jax.models.qwen_omni.processing import process
  graphdef, state = nnx.split(thinker)
  run = jax.jit(lambda st, inputs: nnx.merge(graphdef, st).features(inputs, layer_idx))

  def features(batch: Sequence[QwenPrompt]) -> tuple[np.ndarray, np.ndarray]:
    videos = [p.video for p in batch if p.video is not None and np.any(p.video)]
    inputs = process(processor, thinker.cfg, [p.text for p in batch], videos=videos or None)
    return np.asarray(run(state, inputs)), np.asarray(inputs.attention_mask)

  return features


# ---------------------------------------------------------------------------------------------
# Input preparation (host side, numpy).

def resampled_mono(audio: np.ndarray, sample_rate: int | None, cfg: MelConfig, *,
                   name: str) -> np.ndarray:
  """Any audio → mono float32 at cfg.sample_rate, whole length (channels averaged, as the
  official `wav.mean(0)`; other rates resampled).

  Raises ValueError naming `name` for empty, non-finite or mis-shaped audio.
  """
  a = np.asarray(audio)
  if a.ndim == 1:
    a = a[None]
  if a.ndim != 2:
    raise ValueError(f"{name}: expected [samples] or [channels, samples], got shape {a.shape}")
  if a.shape[0] > _MAX_CHANNELS:
    raise ValueError(f"{name}: {a.shape[0]} channels (shape {a.shape}); pass "
                     "[channels, samples], not [samples, channels]")
  if a.shape[1] == 0:
    raise ValueError(f"{name}: the audio is empty (0 samples)")
  if not np.issubdtype(a.dtype, np.floating):
    raise ValueError(f"{name}: expected float samples in [-1, 1], got dtype {a.dtype}")
  if not np.all(np.isfinite(a)):
    raise ValueError(f"{name}: contains NaN or infinite samples")
  if sample_rate is None or sample_rate <= 0:
    raise ValueError(f"{name}: needs a positive sample_rate, got {sample_rate}")
  return resample(a.astype(np.float32).mean(axis=0), int(sample_rate), cfg.sample_rate)


def prepare_audio(audio: np.ndarray, sample_rate: int | None, cfg: MelConfig, *, name: str,
                  keep_last_seconds: float | None = None) -> np.ndarray:
  """Any audio → the mel path's input: mono, cfg.sample_rate, exactly cfg.num_samples samples.

  The start is kept (or the last `keep_last_seconds`, for voice prompts) and zeros pad the end.
  """
  mono = resampled_mono(audio, sample_rate, cfg, name=name)
  if keep_last_seconds is not None:
    mono = mono[-int(round(keep_last_seconds * cfg.sample_rate)):]
  out = np.zeros(cfg.num_samples, np.float32)
  kept = mono[:cfg.num_samples]
  out[:len(kept)] = kept
  return out


def qwen_prompt(request: Request) -> QwenPrompt:
  """The Qwen prompt of one request (official `build_prompt`) and its decoded video, if any."""
  return QwenPrompt(prompts.build_prompt(request.task, request.prompt, source=request.source,
                                         target=request.target), video=request.video_frames)


def _transcript(request: Request) -> str | None:
  if request.task != "TTS":
    return None
  return prompts.speech_transcript(request.prompt, request.reference_text)


def _mel_audio(request: Request, cfg: MelConfig) -> np.ndarray:
  if request.audio is None:
    return np.zeros(cfg.num_samples, np.float32)
  if request.task == "TTS":
    return prepare_audio(request.audio, request.sample_rate, cfg, name="voice prompt",
                         keep_last_seconds=VOICE_PROMPT_SECONDS)
  if request.task in prompts.EDIT_TASKS:
    return prepare_audio(request.audio, request.sample_rate, cfg, name="edit source audio")
  raise ValueError(f"task {request.task!r} takes no audio input (Request.audio must be None)")


def _sync(request: Request, cfg: ModelConfig) -> np.ndarray:
  shape = (cfg.sync.seq_len, cfg.sync.input_dim)
  if request.sync_features is None:
    return np.zeros(shape, np.float32)
  features = np.asarray(request.sync_features, np.float32).reshape(-1, shape[1])
  if features.shape != shape:
    raise ValueError(f"sync_features: expected {shape} (10 s of Synchformer features), got "
                     f"{np.shape(request.sync_features)}")
  if not np.all(np.isfinite(features)):
    raise ValueError("sync_features: contains NaN or infinite values")
  return features


def host_inputs(requests: Sequence[Request], cfg: ModelConfig) -> ConditionerInputs:
  """The heads inputs that come from the host (numpy), Qwen features left out (None)."""
  ids, has_text = tokenize([_transcript(r) for r in requests], cfg.transcript.seq_len)
  return ConditionerInputs(
      qwen_hidden=None, qwen_mask=None, transcript_ids=ids, has_transcript=has_text,
      sync_features=np.stack([_sync(r, cfg) for r in requests]),
      waveform=np.stack([_mel_audio(r, cfg.mel) for r in requests]),
      is_tts=np.asarray([r.task == "TTS" for r in requests]))


def build_inputs(requests: Sequence[Request], qwen_hidden: np.ndarray, qwen_mask: np.ndarray,
                 cfg: ModelConfig) -> ConditionerInputs:
  """One batch of heads inputs for any mix of tasks (the API's conditioning dicts, as arrays)."""
  if len(qwen_hidden) != len(requests) or len(qwen_mask) != len(requests):
    raise ValueError(f"Qwen features cover {len(qwen_hidden)} items, the batch has "
                     f"{len(requests)}")
  inputs = host_inputs(requests, cfg)._replace(qwen_hidden=qwen_hidden, qwen_mask=qwen_mask)
  return jax.tree.map(jnp.asarray, inputs)


def postprocess_int16(audio: np.ndarray) -> np.ndarray:
  """The API's `_postprocess`: [B, N, C] → [C, B·N] int16, peak-normalised, truncated.

  Silent output (peak 0, where the official code divides by zero) gives zeros.
  """
  a = np.asarray(audio, np.float32)
  flat = np.transpose(a, (2, 0, 1)).reshape(a.shape[2], -1)
  peak = np.max(np.abs(flat)) if flat.size else 0.0
  if peak == 0.0:
    return np.zeros(flat.shape, np.int16)
  return (np.clip(flat / peak, -1.0, 1.0) * np.float32(32767)).astype(np.int16)


# ---------------------------------------------------------------------------------------------
# The model.

@functools.partial(jax.jit, static_argnames=("graphdef",))
def _condition(graphdef: nnx.GraphDef, state: nnx.State,
               inputs: ConditionerInputs) -> DiTConditioning:
  return nnx.merge(graphdef, state)(inputs)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _decode(graphdef: nnx.GraphDef, state: nnx.State, latents: jax.Array) -> jax.Array:
  return nnx.merge(graphdef, state).decode(latents)


class Pipeline:
  """Heads + DiT + VAE, split once; `generate` runs one batch of requests end to end."""

  def __init__(self, cfg: Config, heads: ConditionerHeads, dit: DiffusionTransformer,
               vae: OobleckVAE):
    self.cfg = cfg
    self.heads = nnx.split(heads)
    self.dit = nnx.split(dit)
    self.vae = nnx.split(vae)

  def condition(self, inputs: ConditionerInputs) -> DiTConditioning:
    return _condition(*self.heads, inputs)

  def decode(self, latents: jax.Array) -> jax.Array:
    """Latents [B, T, C] → float32 audio [B, T·ratio, channels]."""
    return _decode(*self.vae, latents)

  def noise_shape(self, batch: int) -> tuple[int, int, int]:
    return (batch, self.cfg.model.latent_length, self.cfg.model.dit.io_channels)

  def generate(self, requests: Sequence[Request],
               qwen: QwenFeatures | tuple[np.ndarray, np.ndarray], *,
               noise: np.ndarray | None = None, key: jax.Array | None = None,
               steps: int | None = None, cfg_scale: float | None = None,
               cfg_rescale: float | None = None) -> np.ndarray:
    """Float audio [B, samples, channels] for `requests`.

    The noise ([B, latent_length, io_channels]) is injected or drawn from `key` before anything
    else runs, as in the official code. Sampling defaults come from `cfg.sampling`.
    """
    if not requests:
      raise ValueError("requests is empty")
    shape = self.noise_shape(len(requests))
    if noise is None:
      if key is None:
        raise ValueError("give either noise or a PRNG key")
      noise = jax.random.normal(key, shape, jnp.float32)
    elif tuple(np.shape(noise)) != shape:
      raise ValueError(f"noise: expected shape {shape} [batch, latents, channels], got "
                       f"{np.shape(noise)}")
    hidden, mask = qwen([qwen_prompt(r) for r in requests]) if callable(qwen) else qwen
    cond = self.condition(build_inputs(requests, hidden, mask, self.cfg.model))
    latents = self.sample(jnp.asarray(noise, jnp.float32), cond, steps=steps,
                          cfg_scale=cfg_scale, cfg_rescale=cfg_rescale)
    return np.asarray(self.decode(latents))

  def sample(self, noise: jax.Array, cond: DiTConditioning, *, steps: int | None = None,
             cfg_scale: float | None = None, cfg_rescale: float | None = None,
             known: jax.Array | None = None, known_mask: jax.Array | None = None) -> jax.Array:
    """The Euler CFG sampler with `cfg.sampling` defaults; `known` frames are inpainted."""
    s = self.cfg.sampling
    return sample(*self.dit, noise, cond, steps=s.steps if steps is None else steps,
                  cfg_scale=s.cfg_scale if cfg_scale is None else cfg_scale,
                  cfg_rescale=s.cfg_rescale if cfg_rescale is None else cfg_rescale,
                  cached_context=s.cached_context, known=known, known_mask=known_mask,
                  solver=s.solver, grid=grid_from_config(s))


def from_state_dict(state_dict, cfg: Config) -> Pipeline:
  """A Pipeline holding an official state dict's DiT, VAE and heads (the thinker is separate)."""
  from aomni_jax.conversion.dit import convert_dit
  from aomni_jax.conversion.common import build_loaded
  from aomni_jax.conversion.official import VAE_PREFIX, convert_heads
  from aomni_jax.conversion.vae import convert_vae
  m = cfg.model
  return Pipeline(
      cfg,
      build_loaded(lambda: registry.build_heads(m, nnx.Rngs(0)), convert_heads(state_dict, m)),
      build_loaded(lambda: registry.build_dit(m, nnx.Rngs(0)),
                   convert_dit(state_dict, m.dit)),
      build_loaded(lambda: OobleckVAE(m.vae, rngs=nnx.Rngs(0)),
                   convert_vae(state_dict, m.vae, prefix=VAE_PREFIX)))
