"""Host-side pre-processing: transformers' Qwen2.5-Omni processor (from local files only) → inputs.

The processor tokenizes and expands placeholders, computes Whisper log-mels and patchifies
images/videos. We then add what our jitted model needs from the host: the 3-D positions, the
audio chunk layout and the vision attention groups.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from aomni_jax.models.qwen_omni.audio import audio_inputs
from aomni_jax.models.qwen_omni.config import ThinkerConfig
from aomni_jax.models.qwen_omni.positions import rope_index
from aomni_jax.models.qwen_omni.thinker import ThinkerInputs
from aomni_jax.models.qwen_omni.vision import vision_inputs


def load_processor(directory: str):
  """`Qwen2_5OmniProcessor` from a local directory; never touches the network.

  Videos need transformers' torchvision-backed video processor; without torchvision the
  processor still handles text, audio and images.
  """
  from transformers import Qwen2_5OmniProcessor
  return Qwen2_5OmniProcessor.from_pretrained(directory, local_files_only=True)


def _np(value) -> np.ndarray | None:
  if value is None:
    return None
  return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def model_inputs(batch: Mapping[str, Any], cfg: ThinkerConfig, *,
                 use_audio_in_video: bool = False) -> ThinkerInputs:
  """Processor outputs (torch or numpy) → ThinkerInputs (numpy), with positions and layouts."""
  ids = _np(batch["input_ids"]).astype(np.int32)
  mask = _np(batch.get("attention_mask"))
  mask = np.ones_like(ids) if mask is None else mask.astype(np.int32)
  audio, audio_lengths = None, None
  if batch.get("input_features") is not None:
    feature_mask = _np(batch["feature_attention_mask"])
    audio_lengths = feature_mask.sum(-1)
    audio = audio_inputs(_np(batch["input_features"]), audio_lengths, cfg.audio)
    expected, placed = len(audio.pool_first), int((ids == cfg.audio_token_id).sum())
    if expected != placed:
      raise ValueError(f"{placed} audio placeholder tokens but the audio gives {expected}")
  towers = {}
  for kind, pixels_key, grid_key, token in (
      ("image", "pixel_values", "image_grid_thw", cfg.image_token_id),
      ("video", "pixel_values_videos", "video_grid_thw", cfg.video_token_id)):
    if batch.get(pixels_key) is None:
      towers[kind] = None
      continue
    grid = _np(batch[grid_key])
    towers[kind] = vision_inputs(_np(batch[pixels_key]), grid, cfg.vision)
    expected = int(np.prod(grid, axis=1).sum()) // cfg.vision.merge_unit
    placed = int((ids == token).sum())
    if expected != placed:
      raise ValueError(f"{placed} {kind} placeholder tokens but the {kind}s give {expected}")
  positions, _ = rope_index(
      ids, mask, cfg, image_grid_thw=_np(batch.get("image_grid_thw")),
      video_grid_thw=_np(batch.get("video_grid_thw")), audio_lengths=audio_lengths,
      video_second_per_grid=_np(batch.get("video_second_per_grid")),
      use_audio_in_video=use_audio_in_video)
  return ThinkerInputs(ids, mask, positions, audio, towers["image"], towers["video"])


def process(processor, cfg: ThinkerConfig, text: Sequence[str], *, audio=None, images=None,
            videos=None, use_audio_in_video: bool = False, **kwargs) -> ThinkerInputs:
  """Runs the HF processor (left padding) and builds our inputs."""
  if use_audio_in_video:
    kwargs["load_audio_from_video"] = True  # 5.x spelling; the audio track must be passed too
  batch = processor(text=list(text), audio=audio, images=images, videos=videos,
                    return_tensors="pt", padding=True, **kwargs)
  return model_inputs(batch, cfg, use_audio_in_video=use_audio_in_video)
