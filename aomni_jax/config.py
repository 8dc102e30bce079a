"""Configuration schema: frozen dataclasses, loaders and command-line overrides.

Configs are Python files under `configs/` with a `get_config(arg=None)` function (big_vision style),
or the official `model/Audio-Omni.json`. Every section is a frozen dataclass, so a section can be a
static argument of `jax.jit` and two equal configs hash equally. Overrides use dotted paths:
`--set dit.depth=2 train.learning_rate=3e-4`.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import os
import typing
from typing import Any, Sequence


@dataclasses.dataclass(frozen=True)
class DiTConfig:
  """The DiffusionTransformer (official_spec §5). Defaults are the official full size."""

  io_channels: int = 64
  embed_dim: int = 2048
  depth: int = 36
  num_heads: int = 32
  cond_token_dim: int = 768
  global_cond_dim: int = 768
  timestep_features_dim: int = 256
  ff_mult: int = 4
  rotary_base: float = 10000.0
  norm_eps: float = 1e-5
  # Numerics and execution (not part of the official config).
  dtype: str = "float32"  # compute dtype of matmuls and attention
  param_dtype: str = "float32"
  attention: str = "xla"  # xla | cudnn | splash | auto (cudnn on GPU, splash on TPU)
  scan_layers: bool = True
  remat: str = "none"  # see aomni_jax.layers.remat.POLICIES

  @property
  def head_dim(self) -> int:
    return self.embed_dim // self.num_heads

  @property
  def rotary_dim(self) -> int:
    # The official RotaryEmbedding is built with max(dim_heads // 2, 32).
    return max(self.head_dim // 2, 32)

  @property
  def ff_inner_dim(self) -> int:
    return self.embed_dim * self.ff_mult


@dataclasses.dataclass(frozen=True)
class VAEConfig:
  """Oobleck VAE (official_spec §6)."""

  audio_channels: int = 2
  channels: int = 128
  c_mults: tuple[int, ...] = (1, 2, 4, 8, 16)
  strides: tuple[int, ...] = (2, 4, 4, 8, 8)
  latent_dim: int = 64  # the decoder input; the encoder emits 2 * latent_dim (mean, scale)
  latent_scale: float = 1.0  # the pretransform's `scale` (absent from the official JSON, so 1.0)
  dtype: str = "float32"
  param_dtype: str = "float32"

  @property
  def downsampling_ratio(self) -> int:
    ratio = 1
    for s in self.strides:
      ratio *= s
    return ratio


@dataclasses.dataclass(frozen=True)
class TranscriptConfig:
  """The F5-style ConvNeXtV2 transcript encoder (`speech_prompt`, official_spec §3.2)."""

  vocab_size: int = 2545
  text_dim: int = 512
  conv_layers: int = 4
  conv_mult: int = 2
  seq_len: int = 2584
  proj_seq_len: int = 256
  out_dim: int = 768


@dataclasses.dataclass(frozen=True)
class MelConfig:
  """The mel encoder (`audio_input_prompt`, official_spec §3.3)."""

  sample_rate: int = 44100
  n_fft: int = 1024
  win_length: int = 1024
  hop_length: int = 256
  n_mels: int = 100
  num_frames: int = 1723  # 10 s at 44.1 kHz
  seq_len: int = 236
  out_dim: int = 768
  # TTS infill masking (training only): a span of U(start, end) of the frames is zeroed.
  mask_ratio_start: float = 0.7
  mask_ratio_end: float = 1.0
  window_seconds: float = 10.0  # every mel input is cropped / zero-padded to this length

  @property
  def num_samples(self) -> int:
    """Waveform length of one mel input; it gives `1 + num_samples // hop_length` frames."""
    return int(round(self.sample_rate * self.window_seconds))


@dataclasses.dataclass(frozen=True)
class SyncConfig:
  """The sync head (`sync_feature`, official_spec §3.4)."""

  input_dim: int = 768
  seq_len: int = 240
  out_seq_len: int = 128
  out_dim: int = 768


@dataclasses.dataclass(frozen=True)
class SynchformerConfig:
  """Synchformer's visual branch (MotionFormer ViT, official_spec §3.4), frozen.

  Defaults are the real size: 16-frame segments at 25 fps with stride 8, 224×224, tubelets of
  2×16×16 → 8 time tokens × 14×14 patches per segment, each segment giving 8 tokens of 768.
  """

  embed_dim: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_ratio: int = 4
  image_size: int = 224
  patch_size: int = 16
  tubelet_frames: int = 2  # PATCH_SIZE_TEMP
  segment_frames: int = 16
  segment_stride: int = 8
  fps: float = 25.0
  norm_eps: float = 1e-6
  dtype: str = "float32"  # compute dtype (the official runs fp32; bfloat16 for speed)
  param_dtype: str = "float32"
  attention: str = "xla"  # xla | cudnn | splash | auto (see layers.attention)

  @property
  def time_tokens(self) -> int:
    """Time steps per segment after the tubelet embedding (= output tokens per segment)."""
    return self.segment_frames // self.tubelet_frames

  @property
  def grid(self) -> int:
    return self.image_size // self.patch_size

  def num_segments(self, num_frames: int) -> int:
    """Full windows in `num_frames` frames; frames after the last full window are ignored."""
    return max(0, (num_frames - self.segment_frames) // self.segment_stride + 1)


@dataclasses.dataclass(frozen=True)
class OmniConfig:
  """The omni head over Qwen features (`omni_prompt`, official_spec §3.1)."""

  feature_dim: int = 2048
  pad_length: int = 2048
  out_dim: int = 768
  layer_idx: int = -2


@dataclasses.dataclass(frozen=True)
class QwenConfig:
  """Which Qwen2.5-Omni thinker to use; the architecture comes from its HF config.json."""

  path: str = ""  # a save_pretrained directory, a full Qwen2.5-Omni checkpoint, or ""
  dtype: str = "bfloat16"
  param_dtype: str = "bfloat16"
  attention: str = "auto"  # cudnn flash on GPU where it applies, splash on TPU, else xla


@dataclasses.dataclass(frozen=True)
class ModulesConfig:
  """Which builder makes each trainable module (`aomni_jax.models.registry`): a registered name,
  or `package.module:function` (imported on use), so a swapped module needs no fork."""

  dit: str = "default"
  heads: str = "default"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The whole Audio-Omni model: lengths and one section per network."""

  sample_rate: int = 44100
  sample_size: int = 485100  # every generation uses this many samples (11 s)
  dit: DiTConfig = DiTConfig()
  vae: VAEConfig = VAEConfig()
  transcript: TranscriptConfig = TranscriptConfig()
  mel: MelConfig = MelConfig()
  sync: SyncConfig = SyncConfig()
  synchformer: SynchformerConfig = SynchformerConfig()
  omni: OmniConfig = OmniConfig()
  qwen: QwenConfig = QwenConfig()
  modules: ModulesConfig = ModulesConfig()

  @property
  def latent_length(self) -> int:
    return self.sample_size // self.vae.downsampling_ratio


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """ODE sampler with classifier-free guidance (official_spec §7; Euler on the linear grid)."""

  steps: int = 100
  cfg_scale: float = 7.0
  cfg_rescale: float = 0.0  # the official `scale_phi`
  cached_context: bool = True  # project context K/V once, skip the zero uncond cross-attention
  solver: str = "euler"  # euler | heun | midpoint | dpmpp_2m (aomni_jax.solvers)
  grid: str = "linear"  # linear | shifted | logit_normal
  grid_shift: float = 3.0  # "shifted": t -> s·t / (1 + (s - 1)·t)
  grid_mean: float = 0.0  # "logit_normal"
  grid_std: float = 1.0  # "logit_normal"


@dataclasses.dataclass(frozen=True)
class FlowConfig:
  """Rectified-flow training objective (official_spec §7)."""

  t_sampler: str = "uniform"  # uniform | logit_normal
  logit_normal_mean: float = 0.0
  logit_normal_std: float = 1.0
  cfg_dropout_prob: float = 0.1


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Device mesh and the logical→mesh axis rules; the only place that knows mesh axes."""

  data: int = 1
  fsdp: int = -1  # -1: all remaining devices
  tensor: int = 1
  # Each logical name maps to mesh axes tried in order (an axis is used once per array, and only
  # where it divides the dimension); names without a rule are replicated with a warning.
  rules: tuple[tuple[str, Any], ...] = (
      ("batch", ("data", "fsdp")),
      ("layers", None),
      ("embed", "fsdp"),
      ("mlp", "tensor"),
      ("heads", "tensor"),
      ("kv", None),
      ("qkv", "tensor"),
      ("vocab", "tensor"),
      ("cond", "fsdp"),
      ("length", None),
      ("channels", None),
      ("conv_in", None),
      ("conv_out", "fsdp"),
      ("norm", None),
  )
  # Fail when more than this fraction of trainable-parameter bytes is replicated (multi-device).
  replication_tolerance: float = 0.02
  # Multi-process start-up; with coordinator_address empty, the launcher's environment
  # (JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID) or JAX's auto-detection (TPU
  # pods, SLURM, Open MPI, Kubernetes) decides; a plain host runs single-process.
  coordinator_address: str = ""
  num_processes: int = 0
  process_id: int = -1
  init_timeout_s: int = 300
  # Skip multi-process start-up even where a cluster is detected (one worker of a pod on its own);
  # refused when the config or the launcher asks for several processes.
  single_process: bool = False


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation, checkpointing and logging of the training loop."""

  workdir: str = "runs/default"
  seed: int = 0
  batch_size: int = 8
  grad_accum_steps: int = 1
  num_steps: int = 100_000
  learning_rate: float = 1e-4
  warmup_steps: int = 1000
  min_lr_ratio: float = 0.1  # cosine decays to learning_rate * min_lr_ratio at num_steps
  weight_decay: float = 1e-3
  adam_b1: float = 0.9
  adam_b2: float = 0.999
  adam_eps: float = 1e-8
  grad_clip_norm: float = 1.0
  ema_decay: float = 0.999
  on_nonfinite: str = "stop"  # stop | skip
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  async_checkpointing: bool = True
  checkpoint_on_signal: bool = True  # Ctrl-C / SIGTERM: finish the step, checkpoint it, exit 0
  log_every: int = 50
  sample_every: int = 5000  # 0: never; samples are also written once at the end of training
  num_sample_steps: int = 25  # Euler steps for the periodic samples
  peak_tflops: float = 0.0  # per device, for MFU; 0 = look up the device kind
  init: str = ""  # converted model directory to start the DiT and heads from ("" = random init)
  lora_rank: int = 0  # > 0: train only rank-r adapters on the DiT attention / MLP projections
  lora_alpha: float = 0.0  # adapter scale alpha / rank; 0 = rank (scale 1)
  eval_every: int = 0  # validation loss every N steps (0 = never; also at the end when > 0)
  eval_fraction: float = 0.05  # share of the records held out for validation
  eval_batches: int = 2  # validation batches per evaluation (the same examples every time)
  eval_timesteps: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)  # fixed t grid of the eval loss


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where training examples come from."""

  root: str = ""  # "" = the embedded default dataset, built on first use
  num_workers: int = 2
  precomputed: bool = False
  # The converted model directory whose frozen modules (Qwen thinker, VAE) make the training
  # features, precomputed (`aomni-data precompute --model`) or on the fly.
  model_dir: str = ""
  # The CPU demo (`train.demo`): when model_dir is empty, train this VAE config (e.g.
  # configs/vae_tiny.py), build <workdir>/demo_model from it and a random tiny thinker, and
  # precompute the features with it first. "" = off.
  demo_vae_config: str = ""


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
  """Oobleck VAE training (`kind="vae"`), the stable-audio-tools recipe.

  Defaults are Stable Audio Open's VAE loss config: a sum-and-difference multi-resolution STFT
  loss (hop = ¼ window, A-weighted), KL 1e-4, and an optional Encodec MS-STFT discriminator
  (hinge, adversarial 0.1, feature matching 5.0). Optimiser settings come from `train`.
  """

  crop_samples: int = 65536  # training crop per example (44.1 kHz)
  stft_fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64, 32)
  stft_hop_ratio: float = 0.25
  stft_perceptual_weighting: bool = True  # A-weighting FIR before the STFTs
  # Stereo: "sum_difference" (mid and side signals, the official choice) or "channels" (left and
  # right, as for mono). Prefer "channels" for data with many mono recordings copied to both
  # channels: their side signal is exactly zero, and the side term's spectral convergence
  # (divided by the target's norm) then explodes.
  stft_stereo: str = "sum_difference"
  stft_sum_weight: float = 1.0  # mid (L + R) term
  stft_diff_weight: float = 1.0  # side (L − R) term
  kl_weight: float = 1e-4
  # Initial bias of the encoder's scale channels: 0 gives posterior std softplus(0) ≈ 0.69, noise
  # that swamps a fresh encoder's near-zero means; −4 (std ≈ 0.02) lets a short run learn first.
  posterior_scale_bias: float = 0.0
  # Train every conv as g · v / ‖v‖ (stable-audio-tools' WNConv1d); exported folded, so the
  # model directory holds plain kernels like a converted official VAE.
  weight_norm: bool = False
  l1_weight: float = 0.0  # time-domain L1
  discriminator: bool = False
  discriminator_start: int = 0  # generator-only steps before the adversarial losses switch on
  disc_filters: int = 64
  disc_fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128)
  adversarial_weight: float = 0.1
  feature_matching_weight: float = 5.0
  holdout_every: int = 8  # every Nth record (and all records sharing a source clip) held out
  eval_clips: int = 8  # held-out clips in the reconstruction report
  eval_samples: int = 131072  # length of each held-out evaluation clip


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a command needs."""

  name: str = "audio_omni"
  kind: str = "dit"  # what `aomni-train` trains: dit (DiT + heads) | vae (the autoencoder)
  model: ModelConfig = ModelConfig()
  sampling: SamplingConfig = SamplingConfig()
  flow: FlowConfig = FlowConfig()
  mesh: MeshConfig = MeshConfig()
  train: TrainConfig = TrainConfig()
  data: DataConfig = DataConfig()
  autoencoder: AutoencoderConfig = AutoencoderConfig()


# Short aliases so that overrides read naturally: `dit.depth=2` for `model.dit.depth=2`.
_ALIASES = {name: ("model", name) for name in ("dit", "vae", "transcript", "mel", "sync",
                                                 "synchformer", "omni", "qwen", "modules")}


class ConfigError(ValueError):
  """A config file, key or value that cannot be used."""


def replace_path(obj: Any, path: Sequence[str], value: Any) -> Any:
  """Returns a copy of nested frozen dataclasses with `path` set to `value` (type-checked)."""
  head, *rest = path
  fields = {f.name: f for f in dataclasses.fields(obj)}
  if head not in fields:
    raise ConfigError(f"unknown config key {head!r} in {type(obj).__name__}; "
                      f"known: {sorted(fields)}")
  current = getattr(obj, head)
  if rest:
    if not dataclasses.is_dataclass(current):
      raise ConfigError(f"{head!r} is a value, not a section; cannot set {'.'.join(path)}")
    return dataclasses.replace(obj, **{head: replace_path(current, rest, value)})
  return dataclasses.replace(obj, **{head: _coerce(value, current, head)})


def _coerce(value: Any, current: Any, name: str) -> Any:
  if isinstance(current, bool) and not isinstance(value, bool):
    raise ConfigError(f"{name} expects a bool, got {value!r}")
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if isinstance(current, tuple) and isinstance(value, list):
    return tuple(value)
  if current is not None and not isinstance(value, type(current)):
    raise ConfigError(f"{name} expects {type(current).__name__}, got {value!r}")
  return value


def apply_overrides(config: Config, overrides: Sequence[str]) -> Config:
  """Applies `a.b.c=value` strings; values are Python literals, bare words are strings."""
  for item in overrides:
    if "=" not in item:
      raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
    path = key.strip().split(".")
    if path[0] in _ALIASES:
      path = [*_ALIASES[path[0]], *path[1:]]
    config = replace_path(config, path, value)
  return validate(config)


def validate(config: Config) -> Config:
  """Checks the divisibility and shape constraints that would otherwise fail deep inside jit."""
  dit = config.model.dit
  if dit.embed_dim % dit.num_heads:
    raise ConfigError(f"dit.embed_dim={dit.embed_dim} is not divisible by "
                      f"dit.num_heads={dit.num_heads}")
  if dit.head_dim < dit.rotary_dim:
    raise ConfigError(f"dit head dim {dit.head_dim} is smaller than the rotary dim "
                      f"{dit.rotary_dim} (the official code requires head_dim >= 32)")
  for name, value, allowed in (("dit.attention", dit.attention, ("xla", "cudnn", "splash", "auto")),
                               ("flow.t_sampler", config.flow.t_sampler,
                                ("uniform", "logit_normal")),
                               ("train.on_nonfinite", config.train.on_nonfinite,
                                ("stop", "skip")),
                               ("kind", config.kind, ("dit", "vae")),
                               ("autoencoder.stft_stereo", config.autoencoder.stft_stereo,
                                ("sum_difference", "channels")),
                               ("sampling.solver", config.sampling.solver,
                                ("euler", "heun", "midpoint", "dpmpp_2m")),
                               ("sampling.grid", config.sampling.grid,
                                ("linear", "shifted", "logit_normal"))):
    if value not in allowed:
      raise ConfigError(f"{name}={value!r}; expected one of {allowed}")
  if len(config.model.vae.c_mults) != len(config.model.vae.strides):
    raise ConfigError("vae.c_mults and vae.strides must have the same length")
  if config.model.latent_length < 1:
    raise ConfigError(f"sample_size={config.model.sample_size} gives no latent frames")
  ae, ratio = config.autoencoder, config.model.vae.downsampling_ratio
  if config.kind == "vae" and (ae.crop_samples % ratio or ae.eval_samples % ratio
                               or ae.crop_samples <= max(ae.stft_fft_sizes)):
    raise ConfigError(f"autoencoder.crop_samples={ae.crop_samples} and eval_samples="
                      f"{ae.eval_samples} must be multiples of the VAE hop ({ratio}), and crops "
                      f"longer than the largest STFT ({max(ae.stft_fft_sizes)})")
  return config


def from_official_json(official: dict[str, Any], base: Config | None = None) -> Config:
  """Builds a Config from the official model JSON (`model/Audio-Omni.json` format).

  Only the keys the official code reads are used; anything absent keeps the base value, so the
  same function reads fixture manifests that hold a shrunken copy of the JSON.
  """
  config = base or Config()
  model_json = official.get("model", {})
  model = config.model
  model = dataclasses.replace(model,
                              sample_rate=int(official.get("sample_rate", model.sample_rate)),
                              sample_size=int(official.get("sample_size", model.sample_size)))
  dit_json = model_json.get("diffusion", {}).get("config", {})
  if dit_json:
    known = {f.name for f in dataclasses.fields(DiTConfig)}
    dit_kwargs = {k: v for k, v in dit_json.items() if k in known}
    model = dataclasses.replace(model, dit=dataclasses.replace(model.dit, **dit_kwargs))
  pretransform = model_json.get("pretransform", {}).get("config", {})
  if pretransform:
    model = dataclasses.replace(model, vae=_vae_from_json(pretransform, model.vae))
  conditioning = model_json.get("conditioning", {})
  cond_dim = int(conditioning.get("cond_dim", model.omni.out_dim))
  model = dataclasses.replace(
      model, omni=dataclasses.replace(model.omni, out_dim=cond_dim),
      transcript=dataclasses.replace(model.transcript, out_dim=cond_dim),
      mel=dataclasses.replace(model.mel, out_dim=cond_dim),
      sync=dataclasses.replace(model.sync, out_dim=cond_dim))
  for cond in conditioning.get("configs", []):
    model = _conditioner_from_json(cond.get("type"), cond.get("config", {}), model)
  return validate(dataclasses.replace(config, model=model))


def _vae_from_json(pretransform: dict[str, Any], vae: VAEConfig) -> VAEConfig:
  enc = pretransform.get("encoder", {}).get("config", {})
  dec = pretransform.get("decoder", {}).get("config", {})
  latent = int(dec.get("latent_dim", pretransform.get("latent_dim", vae.latent_dim)))
  if "latent_dim" in enc and int(enc["latent_dim"]) != 2 * latent:
    raise ConfigError(f"VAE encoder latent_dim {enc['latent_dim']} must be twice the decoder's "
                      f"{latent} (the `vae` bottleneck splits it into mean and scale)")
  for key in ("channels", "c_mults", "strides"):
    if key in enc and key in dec and enc[key] != dec[key]:
      raise ConfigError(f"VAE encoder and decoder disagree on {key}: {enc[key]} vs {dec[key]}")
  return dataclasses.replace(
      vae, audio_channels=int(enc.get("in_channels", vae.audio_channels)),
      channels=int(enc.get("channels", vae.channels)),
      c_mults=tuple(enc.get("c_mults", vae.c_mults)),
      strides=tuple(enc.get("strides", vae.strides)), latent_dim=latent,
      latent_scale=float(pretransform.get("scale", vae.latent_scale)))


def _conditioner_from_json(kind: str | None, cfg: dict[str, Any],
                           model: ModelConfig) -> ModelConfig:
  """One entry of `conditioning.configs`: only the keys the official constructors read."""
  if kind == "qwen_omni":
    return dataclasses.replace(model, omni=dataclasses.replace(
        model.omni, pad_length=int(cfg.get("pad_length", model.omni.pad_length)),
        layer_idx=int(cfg.get("layer_idx", model.omni.layer_idx))))
  if kind == "sync_feature":
    return dataclasses.replace(model, sync=dataclasses.replace(
        model.sync, seq_len=int(cfg.get("sync_seq_dim", model.sync.seq_len)),
        out_seq_len=int(cfg.get("sync_output_dim", model.sync.out_seq_len))))
  if kind == "tts-f5":
    return dataclasses.replace(model, transcript=dataclasses.replace(
        model.transcript, seq_len=int(cfg.get("seq_len", model.transcript.seq_len)),
        proj_seq_len=int(cfg.get("proj_seq_len", model.transcript.proj_seq_len))))
  if kind == "mel_spec":
    mel = model.mel
    return dataclasses.replace(model, mel=dataclasses.replace(
        mel, n_fft=int(cfg.get("n_fft", mel.n_fft)),
        hop_length=int(cfg.get("hop_length", mel.hop_length)),
        win_length=int(cfg.get("win_length", mel.win_length)),
        n_mels=int(cfg.get("n_mel_channels", mel.n_mels)),
        sample_rate=int(cfg.get("target_sample_rate", mel.sample_rate)),
        mask_ratio_start=float(cfg.get("mask_ratio_start", mel.mask_ratio_start)),
        mask_ratio_end=float(cfg.get("mask_ratio_end", mel.mask_ratio_end)),
        seq_len=int(cfg.get("seq_len", mel.seq_len))))
  return model


def load_config(spec: str, overrides: Sequence[str] = ()) -> Config:
  """Loads `configs/x.py[:arg]` (calls `get_config(arg)`) or an official model JSON file."""
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    raise ConfigError(f"config file {path!r} does not exist (relative paths start at the "
                      "current directory; the shipped configs are in the repository's configs/)")
  if path.endswith(".json"):
    with open(path, encoding="utf-8") as f:
      try:
        official = json.load(f)
      except json.JSONDecodeError as err:
        raise ConfigError(f"config {path!r} is not valid JSON: {err}") from err
    if not isinstance(official, dict):
      raise ConfigError(f"config {path!r}: expected a JSON object (the official model JSON)")
    config = from_official_json(official)
  elif path.endswith(".py"):
    module_spec = importlib.util.spec_from_file_location("_aomni_config", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
      module_spec.loader.exec_module(module)
    except SyntaxError as err:
      raise ConfigError(f"config {path}:{err.lineno}: syntax error: {err.msg}") from err
    if not hasattr(module, "get_config"):
      raise ConfigError(f"{path} has no get_config() function")
    config = module.get_config(arg or None)
    if not isinstance(config, Config):
      raise ConfigError(f"{path}:get_config() returned {type(config).__name__}, not Config")
  else:
    raise ConfigError(f"config {path!r}: expected a .py file with get_config() or a .json file")
  return apply_overrides(config, overrides)


def to_dict(config: Any) -> dict[str, Any]:
  """A JSON-friendly view, for logs and checkpoints."""
  return dataclasses.asdict(config)


def _deep_tuple(value: Any) -> Any:
  return tuple(_deep_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def from_dict(cls: type, data: dict[str, Any]) -> Any:
  """The inverse of `to_dict` for any (nested) frozen-dataclass section, e.g. `Config`.

  JSON lists become tuples again; a key the dataclass lacks is an error, and a field missing from
  `data` keeps its default (so files written before a field existed still load).
  """
  hints = typing.get_type_hints(cls)
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(data) - fields)
  if unknown:
    raise ConfigError(f"{cls.__name__} has no field(s) {unknown}")
  kwargs = {}
  for name, value in data.items():
    hint = hints[name]
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
      kwargs[name] = from_dict(hint, value)
    else:
      kwargs[name] = _deep_tuple(value) if isinstance(value, list) else value
  return cls(**kwargs)
