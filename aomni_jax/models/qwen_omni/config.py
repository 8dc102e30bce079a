"""Frozen architecture config of a Qwen2.5-Omni thinker, read from a Hugging Face config dict.

The HF thinker config nests `text_config`, `audio_config` and `vision_config`; a full
Qwen2.5-Omni config nests all of that under `thinker_config`. Both are accepted, and both the
5.x `rope_parameters` and the legacy `rope_theta` + `rope_scaling` spellings are understood.
Everything is a frozen dataclass so a config can be a static argument of `jax.jit`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class TextConfig:
  """The Qwen2 decoder with M-RoPE."""

  vocab_size: int = 151936
  hidden_size: int = 2048
  intermediate_size: int = 11008
  num_layers: int = 36
  num_heads: int = 16
  num_kv_heads: int = 2
  head_dim: int = 128
  rms_norm_eps: float = 1e-6
  rope_theta: float = 1_000_000.0
  mrope_section: tuple[int, ...] = (16, 24, 24)
  max_position_embeddings: int = 32768


@dataclasses.dataclass(frozen=True)
class AudioConfig:
  """The Whisper-style audio encoder."""

  num_mel_bins: int = 128
  num_layers: int = 32
  num_heads: int = 20
  ffn_dim: int = 5120
  d_model: int = 1280
  max_source_positions: int = 1500
  n_window: int = 100
  output_dim: int = 2048

  @property
  def chunk_frames(self) -> int:
    """Mel frames per attention chunk (2·n_window)."""
    return 2 * self.n_window


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  """The Qwen2.5-VL vision transformer."""

  depth: int = 32
  hidden_size: int = 1280
  intermediate_size: int = 3420
  num_heads: int = 16
  in_channels: int = 3
  patch_size: int = 14
  temporal_patch_size: int = 2
  spatial_merge_size: int = 2
  window_size: int = 112
  fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
  out_hidden_size: int = 2048
  rope_theta: float = 10000.0

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @property
  def patch_dim(self) -> int:
    """Width of one processor row: C · T · p · p."""
    return self.in_channels * self.temporal_patch_size * self.patch_size ** 2

  @property
  def merge_unit(self) -> int:
    return self.spatial_merge_size ** 2

  @property
  def merger_window(self) -> int:
    """Window side in merged tokens (window_size / merge / patch)."""
    return self.window_size // self.spatial_merge_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class ThinkerConfig:
  """Architecture, special tokens and numerics of the thinker."""

  text: TextConfig = TextConfig()
  audio: AudioConfig = AudioConfig()
  vision: VisionConfig = VisionConfig()
  audio_token_id: int = 151646
  image_token_id: int = 151655
  video_token_id: int = 151656
  audio_start_token_id: int = 151647
  audio_end_token_id: int = 151648
  vision_start_token_id: int = 151652
  vision_end_token_id: int = 151653
  bos_token_id: int = 151644
  eos_token_id: int = 151645  # <|im_end|>
  pad_token_id: int = 151643  # <|endoftext|>
  position_id_per_seconds: int = 25
  seconds_per_chunk: int = 2
  tie_word_embeddings: bool = False
  # Numerics (not part of the HF config).
  dtype: str = "bfloat16"
  param_dtype: str = "bfloat16"
  attention: str = "auto"  # cudnn flash on GPU where it applies, splash on TPU, else xla

  @property
  def compute_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  @property
  def weight_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.param_dtype)


# The real Qwen2.5-Omni-3B thinker (qwen_omni_spec §1.2); the key list in tests/golden/keys has an
# untied lm_head.
QWEN25_OMNI_3B = ThinkerConfig()


def _int(d: Mapping[str, Any], *names: str, default: Any = None) -> Any:
  for name in names:
    if name in d and d[name] is not None:
      return d[name]
  if default is None:
    raise ValueError(f"thinker config lacks {' / '.join(names)}")
  return default


def _text_from_hf(t: Mapping[str, Any]) -> TextConfig:
  rope = dict(t.get("rope_parameters") or {})
  scaling = dict(t.get("rope_scaling") or {})
  theta = rope.get("rope_theta", t.get("rope_theta", 1_000_000.0))
  section = rope.get("mrope_section", scaling.get("mrope_section", (16, 24, 24)))
  rope_type = rope.get("rope_type", scaling.get("rope_type", "default"))
  if rope_type not in ("default", "mrope"):
    raise ValueError(f"text rope_type {rope_type!r} is not supported (expected 'default')")
  if t.get("use_sliding_window", False):
    raise ValueError("text_config.use_sliding_window=true is not supported (Qwen2.5-Omni has it off)")
  if t.get("hidden_act", "silu") != "silu":
    raise ValueError(f"text hidden_act {t['hidden_act']!r} is not supported (expected 'silu')")
  hidden = _int(t, "hidden_size")
  heads = _int(t, "num_attention_heads")
  head_dim = t.get("head_dim") or hidden // heads
  section = tuple(int(s) for s in section)
  if 2 * sum(section) != head_dim:
    raise ValueError(f"mrope_section {section} must sum to head_dim/2 = {head_dim // 2}")
  return TextConfig(
      vocab_size=_int(t, "vocab_size"), hidden_size=hidden,
      intermediate_size=_int(t, "intermediate_size"), num_layers=_int(t, "num_hidden_layers"),
      num_heads=heads, num_kv_heads=_int(t, "num_key_value_heads", default=heads),
      head_dim=head_dim, rms_norm_eps=float(t.get("rms_norm_eps", 1e-6)),
      rope_theta=float(theta), mrope_section=section,
      max_position_embeddings=int(t.get("max_position_embeddings", 32768)))


def _audio_from_hf(a: Mapping[str, Any]) -> AudioConfig:
  if a.get("activation_function", "gelu") != "gelu":
    raise ValueError(f"audio activation {a['activation_function']!r} is not supported")
  if a.get("scale_embedding", False):
    raise ValueError("audio scale_embedding=true is not supported (Qwen2.5-Omni has it off)")
  return AudioConfig(
      num_mel_bins=_int(a, "num_mel_bins"), num_layers=_int(a, "encoder_layers"),
      num_heads=_int(a, "encoder_attention_heads"), ffn_dim=_int(a, "encoder_ffn_dim"),
      d_model=_int(a, "d_model"), max_source_positions=_int(a, "max_source_positions"),
      n_window=_int(a, "n_window"), output_dim=_int(a, "output_dim"))


def _vision_from_hf(v: Mapping[str, Any]) -> VisionConfig:
  if v.get("hidden_act", "silu") != "silu":
    raise ValueError(f"vision hidden_act {v['hidden_act']!r} is not supported")
  rope = dict(v.get("rope_parameters") or {})
  return VisionConfig(
      depth=_int(v, "depth"), hidden_size=_int(v, "hidden_size"),
      intermediate_size=_int(v, "intermediate_size"), num_heads=_int(v, "num_heads"),
      in_channels=_int(v, "in_channels"), patch_size=_int(v, "patch_size"),
      temporal_patch_size=_int(v, "temporal_patch_size"),
      spatial_merge_size=_int(v, "spatial_merge_size"), window_size=_int(v, "window_size"),
      fullatt_block_indexes=tuple(int(i) for i in v.get("fullatt_block_indexes", ())),
      out_hidden_size=_int(v, "out_hidden_size"),
      rope_theta=float(rope.get("rope_theta", 10000.0)))


def from_hf_dict(d: Mapping[str, Any], **numerics: Any) -> ThinkerConfig:
  """A ThinkerConfig from an HF thinker (or full Qwen2.5-Omni) config dict.

  `numerics` sets dtype / param_dtype / attention.
  """
  if "thinker_config" in d:
    d = d["thinker_config"]
  for section in ("text_config", "audio_config", "vision_config"):
    if section not in d:
      raise ValueError(f"thinker config lacks {section!r}; is this a Qwen2.5-Omni config?")
  text = _text_from_hf(d["text_config"])
  audio = _audio_from_hf(d["audio_config"])
  vision = _vision_from_hf(d["vision_config"])
  for name, width in (("audio_config.output_dim", audio.output_dim),
                      ("vision_config.out_hidden_size", vision.out_hidden_size)):
    if width != text.hidden_size:
      raise ValueError(f"{name}={width} must equal text hidden_size={text.hidden_size}")
  if vision.head_dim % 4:
    raise ValueError(f"vision head_dim {vision.head_dim} must be divisible by 4 (2-D rotary)")
  tie = d.get("tie_word_embeddings", d["text_config"].get("tie_word_embeddings", False))
  eos = d.get("eos_token_id", d["text_config"].get("eos_token_id", 151645))
  if isinstance(eos, (list, tuple)):
    eos = eos[0]
  return ThinkerConfig(
      text=text, audio=audio, vision=vision,
      audio_token_id=_int(d, "audio_token_id", "audio_token_index"),
      image_token_id=_int(d, "image_token_id", "image_token_index"),
      video_token_id=_int(d, "video_token_id", "video_token_index"),
      audio_start_token_id=_int(d, "audio_start_token_id", default=151647),
      audio_end_token_id=_int(d, "audio_end_token_id", default=151648),
      vision_start_token_id=_int(d, "vision_start_token_id", default=151652),
      vision_end_token_id=_int(d, "vision_end_token_id", default=151653),
      bos_token_id=_int(d, "bos_token_id", default=151644), eos_token_id=int(eos),
      pad_token_id=_int(d, "pad_token_id", default=151643),
      position_id_per_seconds=int(d.get("position_id_per_seconds", 25)),
      seconds_per_chunk=int(d.get("seconds_per_chunk", 2)),
      tie_word_embeddings=bool(tie), **numerics)


def load_thinker_config(path: str, **numerics: Any) -> ThinkerConfig:
  """Reads `config.json` from a directory (or the file itself)."""
  file = os.path.join(path, "config.json") if os.path.isdir(path) else path
  if not os.path.exists(file):
    raise FileNotFoundError(f"no Qwen2.5-Omni config.json at {file!r}")
  with open(file, encoding="utf-8") as f:
    return from_hf_dict(json.load(f), **numerics)
