"""`AudioOmni`: a converted model directory → audio for every task, any duration, any batch.

The chain per batch: tokens (host) → Qwen thinker → hidden_states[layer_idx] (device, once per
batch) → heads → cached-context CFG sampler → VAE decode, window after window for long clips
(`longform`). Inputs are placed batch-sharded on the mesh, so the same code runs on one device
or on all devices of a host (data parallel, weights optionally FSDP-sharded). Several hosts each
run their own share of the work on their own devices (`inference.batch`): inference needs no
traffic between hosts.

Every item's noise depends on its seed (and window index) only, and batches are formed from items
that share the transcript rule and the window count (`batch_key`), so an item's audio does not
depend on which other items share its batch.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from aomni_jax import parallel
from aomni_jax.cli.errors import UserError
from aomni_jax.config import Config, apply_overrides
from aomni_jax.inference import longform, model_dir, thinker as thinker_lib
from aomni_jax.inference.pipeline import (VIDEO_TASKS, Pipeline, Request, host_inputs,
                                          qwen_prompt, resampled_mono)
from aomni_jax.inference.video import (VideoFrontEnd, bare_video_placeholder,
                                       expand_video_placeholder)
from aomni_jax.models import registry
from aomni_jax.models.conditioners import ConditionerHeads
from aomni_jax.models.dit import DiffusionTransformer
from aomni_jax.models.qwen_omni.config import ThinkerConfig
from aomni_jax.models.qwen_omni.thinker import Thinker, ThinkerInputs
from aomni_jax.models.synchformer import Synchformer
from aomni_jax.models.vae import OobleckVAE
from aomni_jax.text import prompts
from aomni_jax.text.frontend import text_to_symbols
from aomni_jax.text.prompts import speech_transcript

DEFAULT_OVERLAP_SECONDS = 2.0


def with_dtype(cfg: Config, dtype: str) -> Config:
  """DiT and VAE parameters and compute in `dtype`; heads stay float32, Qwen as configured."""
  m = cfg.model
  model = dataclasses.replace(
      m, dit=dataclasses.replace(m.dit, dtype=dtype, param_dtype=dtype),
      vae=dataclasses.replace(m.vae, dtype=dtype, param_dtype=dtype))
  return dataclasses.replace(cfg, model=model)


def thinker_config(stored: ThinkerConfig, cfg: Config) -> ThinkerConfig:
  """The stored thinker architecture with this run's numerics (`cfg.model.qwen`)."""
  q = cfg.model.qwen
  return dataclasses.replace(stored, dtype=q.dtype, param_dtype=q.param_dtype,
                             attention=q.attention)


@functools.partial(jax.jit, static_argnames=("graphdef", "layer_idx"))
def _features(graphdef: nnx.GraphDef, state: nnx.State, inputs: ThinkerInputs,
              layer_idx: int) -> jax.Array:
  return nnx.merge(graphdef, state).features(inputs, layer_idx)


@functools.partial(jax.jit, static_argnames=("shape",))
def _noise(seeds: jax.Array, window: jax.Array, shape: tuple[int, int]) -> jax.Array:
  """Each row's noise from its own seed and the window index only."""
  keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(s), window))(seeds)
  return jax.vmap(lambda k: jax.random.normal(k, shape, jnp.float32))(keys)


def default_seconds(request: Request, window_seconds: float) -> float:
  """None → an edit keeps its source's duration; anything else is one window (official)."""
  if request.seconds is not None:
    return request.seconds
  if request.task in prompts.EDIT_TASKS:
    return np.shape(request.audio)[-1] / float(request.sample_rate)
  return window_seconds


class AudioOmni:
  """The loaded model: heads, DiT, VAE (a `Pipeline`), the Qwen thinker and its tokenizer."""

  def __init__(self, cfg: Config, heads: ConditionerHeads, dit: DiffusionTransformer,
               vae: OobleckVAE, thinker: Thinker, tokenizer: Any, *, mesh: Mesh | None = None,
               source: str = "", synchformer: Synchformer | None = None):
    self.cfg = cfg
    self.pipeline = Pipeline(cfg, heads, dit, vae)
    self.video = VideoFrontEnd(cfg.model, synchformer)
    self.thinker = nnx.split(thinker)
    self.thinker_cfg: ThinkerConfig = thinker.cfg
    self.tokenizer = tokenizer
    self.mesh = mesh
    self.source = source

  # -------------------------------------------------------------------------------------------
  # Loading.

  @classmethod
  def load(cls, directory: str, *, mesh: Mesh | None = None, dtype: str = "bfloat16",
           sampling: Sequence[str] = ()) -> "AudioOmni":
    """From a converted model directory (`aomni-convert` or a training export).

    With a mesh, every weight is restored straight into its sharding (`cfg.mesh.rules`).
    `sampling`: `sampling.*=value` overrides of the directory's sampler defaults (solver, grid).
    """
    cfg = with_dtype(apply_overrides(model_dir.read_config(directory), sampling), dtype)
    missing = [c for c in ("dit", "heads", "vae", "qwen")
               if not model_dir.has_component(directory, c)]
    if missing:
      raise UserError(f"{directory} lacks the component(s) {missing}; convert the official "
                      "checkpoint with aomni-convert (without --skip) to get a complete model")
    processor = model_dir.processor_path(directory)
    if processor is None:
      raise UserError(f"{directory} has no processor/ folder (the Qwen tokenizer); re-run "
                      "aomni-convert with --qwen-processor pointing at a local Qwen2.5-Omni-3B "
                      "folder")
    tcfg = thinker_config(model_dir.component_config(directory, "qwen", ThinkerConfig), cfg)
    m = cfg.model
    factories: dict[str, Callable[[], nnx.Module]] = {
        "heads": lambda: registry.build_heads(m, nnx.Rngs(0)),
        "dit": lambda: registry.build_dit(m, nnx.Rngs(0)),
        "vae": lambda: OobleckVAE(m.vae, rngs=nnx.Rngs(0)),
        "qwen": lambda: Thinker(tcfg, rngs=nnx.Rngs(0))}
    modules = {}
    shardings = (None if mesh is None else
                 lambda state: parallel.state_shardings(state, mesh, cfg.mesh.rules))
    for name, factory in factories.items():
      modules[name] = model_dir.load_component(directory, name, factory, shardings=shardings)
    synchformer = None
    if model_dir.has_component(directory, "synchformer"):  # optional: only V2A / V2M need it
      synchformer = model_dir.load_component(
          directory, "synchformer", lambda: Synchformer(m.synchformer, rngs=nnx.Rngs(0)),
          shardings=None if mesh is None else NamedSharding(mesh, jax.sharding.PartitionSpec()))
    tokenizer = thinker_lib.load_tokenizer(str(processor))
    return cls(cfg, modules["heads"], modules["dit"], modules["vae"], modules["qwen"], tokenizer,
               mesh=mesh, source=str(directory), synchformer=synchformer)

  @classmethod
  def from_state_dict(cls, state_dict, cfg: Config, thinker_cfg: ThinkerConfig, tokenizer: Any,
                      *, mesh: Mesh | None = None, dtype: str = "bfloat16") -> "AudioOmni":
    """From an official state dict held in memory (thinker keys included)."""
    from aomni_jax.conversion.common import build_loaded
    from aomni_jax.conversion.hf_qwen import convert_thinker
    from aomni_jax.conversion.official import THINKER_PREFIX
    from aomni_jax.inference.pipeline import from_state_dict
    cfg = with_dtype(cfg, dtype)
    pipe = from_state_dict(state_dict, cfg)
    tcfg = thinker_config(thinker_cfg, cfg)
    thinker = build_loaded(lambda: Thinker(tcfg, rngs=nnx.Rngs(0)),
                           convert_thinker(state_dict, tcfg, prefix=THINKER_PREFIX))
    modules = [nnx.merge(*part) for part in (pipe.heads, pipe.dit, pipe.vae)] + [thinker]
    if mesh is not None:
      modules = [_shard(module, mesh, cfg.mesh.rules) for module in modules]
    return cls(cfg, *modules, tokenizer, mesh=mesh, source="state dict")

  # -------------------------------------------------------------------------------------------
  # Shapes and plans.

  @property
  def ratio(self) -> int:
    return self.cfg.model.vae.downsampling_ratio

  @property
  def window_seconds(self) -> float:
    return self.cfg.model.latent_length * self.ratio / self.cfg.model.sample_rate

  def plan(self, request: Request,
           overlap_seconds: float = DEFAULT_OVERLAP_SECONDS) -> longform.WindowPlan:
    """The windows of one request; TTS and video tasks are limited to one window."""
    seconds = default_seconds(request, self.window_seconds)
    sr = self.cfg.model.sample_rate
    overlap = int(round(overlap_seconds * sr / self.ratio))
    plan = longform.plan_windows(max(1, int(round(seconds * sr))), self.cfg.model.latent_length,
                                 self.ratio, overlap)
    if plan.count > 1 and (request.task == "TTS" or request.task in VIDEO_TASKS):
      raise ValueError(f"{request.task} makes at most one window ({self.window_seconds:.2f} s); "
                       f"got seconds={seconds:g} (split long text or video into parts)")
    return plan

  def prompt_tokens(self, request: Request) -> list[int]:
    """The request's Qwen prompt as token ids (checks that it is not empty or too long)."""
    self.video.check(request)
    if request.task == "TTS":
      symbols = len(text_to_symbols(speech_transcript(request.prompt, request.reference_text)))
      if symbols > self.cfg.model.transcript.seq_len:
        raise thinker_lib.PromptTooLong(
            f"prompt too long: the TTS text has {symbols} symbols, the transcript encoder takes "
            f"at most {self.cfg.model.transcript.seq_len}")
    text = expand_video_placeholder(qwen_prompt(request).text, request, self.cfg.model,
                                    self.thinker_cfg.vision)
    ids = thinker_lib.token_ids(self.tokenizer, [text])[0]
    thinker_lib.bucket_length(len(ids), self.cfg.model.omni.pad_length)
    return ids

  def prompt_length(self, requests: Sequence[Request]) -> int:
    """One padded Qwen length for all `requests` (a batch run uses one for the whole run)."""
    longest = max(len(self.prompt_tokens(r)) for r in requests)
    return thinker_lib.bucket_length(longest, self.cfg.model.omni.pad_length)

  def batch_key(self, request: Request, overlap_seconds: float = DEFAULT_OVERLAP_SECONDS
                ) -> tuple[bool, int, bool]:
    """Items batched together share this: the transcript rule, the window count, and whether
    the prompt holds a bare video placeholder (a video task without a video: the vision tower
    must not be given videos for it)."""
    return (request.task == "TTS", self.plan(request, overlap_seconds).count,
            bare_video_placeholder(request))

  # -------------------------------------------------------------------------------------------
  # Placement.

  def _place(self, x: np.ndarray, batch_axis: int = 0) -> jax.Array:
    """A host array → the device(s): batch axis sharded over the mesh, or the default device."""
    if self.mesh is None:
      return jnp.asarray(x)
    axes = [None] * x.ndim
    axes[batch_axis] = parallel.BATCH_AXIS
    spec = parallel.logical_to_spec(tuple(axes), x.shape, self.mesh, self.cfg.mesh.rules)
    return jax.device_put(x, NamedSharding(self.mesh, spec))

  def _replicate(self, x: np.ndarray) -> jax.Array:
    """A host array every device needs whole (e.g. the batch's video patches)."""
    if self.mesh is None:
      return jnp.asarray(x)
    return jax.device_put(x, NamedSharding(self.mesh, jax.sharding.PartitionSpec()))

  # -------------------------------------------------------------------------------------------
  # Generation.

  def generate(self, requests: Sequence[Request], *, seed: int | Sequence[int] = 0,
               batch_size: int | None = None, **kwargs) -> list[np.ndarray]:
    """Float audio [samples, channels] per request.

    `seed`: one per request, or an int (request i uses seed + i). Requests are grouped by
    `batch_key` into batches of `batch_size` (default: all of a group at once).
    """
    seeds = ([seed + i for i in range(len(requests))] if isinstance(seed, int) else list(seed))
    if len(seeds) != len(requests):
      raise ValueError(f"{len(seeds)} seeds for {len(requests)} requests")
    overlap = kwargs.get("overlap_seconds", DEFAULT_OVERLAP_SECONDS)
    length = self.prompt_length(requests)
    out: list[np.ndarray | None] = [None] * len(requests)
    for indices in plan_batches([self.batch_key(r, overlap) for r in requests], batch_size):
      size = batch_size or len(indices)
      audio = self.generate_batch([requests[i] for i in indices], [seeds[i] for i in indices],
                                  batch_size=size, prompt_length=length, **kwargs)
      for i, clip in zip(indices, audio):
        out[i] = clip
    return out

  def generate_batch(self, requests: Sequence[Request], seeds: Sequence[int], *,
                     batch_size: int, prompt_length: int,
                     steps: int | None = None, cfg_scale: float | None = None,
                     cfg_rescale: float | None = None,
                     overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
                     on_stage: Callable[[str, Any], None] | None = None) -> list[np.ndarray]:
    """One batch (requests sharing a `batch_key`), padded to `batch_size` with copies of the
    first so that every batch has the same shapes; returns the audio of the real requests.

    `on_stage(name, output)` is called after each stage is dispatched (benchmarks block on the
    output to time the stages).
    """
    if not requests or len(requests) > batch_size or len(seeds) != len(requests):
      raise ValueError(f"a batch holds 1..{batch_size} requests with one seed each, got "
                       f"{len(requests)} requests and {len(seeds)} seeds")
    stage = on_stage or (lambda name, output: None)
    fill = batch_size - len(requests)
    padded = self.video.prepare(list(requests) + [requests[0]] * fill)
    seeds = list(seeds) + [seeds[0]] * fill
    plans = [self.plan(r, overlap_seconds) for r in padded]
    if len({p.count for p in plans}) != 1:
      raise ValueError("a batch must hold items with the same number of windows (batch_key)")
    m = self.cfg.model
    tokens = thinker_lib.pad_prompts([self.prompt_tokens(r) for r in padded],
                                     prompt_length, self.thinker_cfg,
                                     videos=[r.video_frames for r in padded])
    thinker_inputs = ThinkerInputs(self._place(tokens.input_ids),
                                   self._place(tokens.attention_mask),
                                   self._place(tokens.position_ids, batch_axis=1),
                                   video=None if tokens.video is None else jax.tree.map(
                                       self._replicate, tokens.video))
    hidden = _features(*self.thinker, thinker_inputs, m.omni.layer_idx)
    stage("qwen", hidden)
    sources = [self._edit_source(r) for r in requests]
    sources += [sources[0]] * fill
    seed_array = self._place(np.asarray(seeds, np.uint32))
    shape = (m.latent_length, m.dit.io_channels)
    previous, windows = None, []
    for k in range(plans[0].count):
      window_requests = [self._window_request(r, src, plans[0], k)
                         for r, src in zip(padded, sources)]
      host = host_inputs(window_requests, m)
      inputs = jax.tree.map(self._place, host)._replace(
          qwen_hidden=hidden, qwen_mask=thinker_inputs.attention_mask)
      cond = self.pipeline.condition(inputs)
      stage("heads", cond)
      noise = _noise(seed_array, jnp.uint32(k), shape)
      known = mask = None
      if previous is not None:
        known_np, mask_np = longform.known_frames(previous, plans[0])
        known, mask = self._place(known_np), self._place(mask_np)
      latents = self.pipeline.sample(noise, cond, steps=steps, cfg_scale=cfg_scale,
                                     cfg_rescale=cfg_rescale, known=known, known_mask=mask)
      stage("sampler", latents)
      audio = self.pipeline.decode(latents)
      stage("vae", audio)
      if plans[0].count > 1:
        previous = np.asarray(latents)
      windows.append(np.asarray(audio))
    return [longform.join([w[row] for w in windows], plans[row], self.ratio)
            for row in range(len(requests))]

  def _edit_source(self, request: Request) -> np.ndarray | None:
    """An edit's whole source, mono at the mel rate (windows are cut from it)."""
    if request.task not in prompts.EDIT_TASKS:
      return None
    return resampled_mono(request.audio, request.sample_rate, self.cfg.model.mel,
                          name="edit source audio")

  def _window_request(self, request: Request, source: np.ndarray | None,
                      plan: longform.WindowPlan, k: int) -> Request:
    """The request as window k sees it: an edit gets the source from the window's start."""
    if source is None:
      return request
    mel = self.cfg.model.mel
    start = int(round(plan.start(k) * self.ratio * mel.sample_rate / self.cfg.model.sample_rate))
    return dataclasses.replace(request, audio=source[start:start + mel.num_samples]
                               if start < len(source) else np.zeros(1, np.float32),
                               sample_rate=mel.sample_rate)


def _shard(module: nnx.Module, mesh: Mesh, rules) -> nnx.Module:
  graphdef, state = nnx.split(module)
  shardings = parallel.state_shardings(state, mesh, rules)
  pure = jax.device_put(nnx.to_pure_dict(state), shardings)
  nnx.replace_by_pure_dict(state, pure)
  return nnx.merge(graphdef, state)


def plan_batches(keys: Sequence[Any], batch_size: int | None) -> list[list[int]]:
  """Indices grouped by key (first-seen order), then cut into chunks of `batch_size`."""
  groups: dict[Any, list[int]] = {}
  for index, key in enumerate(keys):
    groups.setdefault(key, []).append(index)
  out = []
  for indices in groups.values():
    size = batch_size or len(indices)
    out += [indices[i:i + size] for i in range(0, len(indices), size)]
  return out
