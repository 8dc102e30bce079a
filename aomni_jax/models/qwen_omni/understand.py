"""Audio / video understanding with the thinker: a chat prompt in, the answer text out."""

from __future__ import annotations

from typing import Any

import numpy as np

from aomni_jax.models.qwen_omni.config import load_thinker_config
from aomni_jax.models.qwen_omni.generate import generate
from aomni_jax.models.qwen_omni.processing import load_processor, process
from aomni_jax.models.qwen_omni.thinker import Thinker

# The system prompt Qwen recommends for Qwen2.5-Omni (Audio-Omni's understanding path uses it).
SYSTEM_PROMPT = ("You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable "
                 "of perceiving auditory and visual inputs, as well as generating text and speech.")
SAMPLE_RATE = 16000


def build_prompt(question: str, *, audio: bool = False, video: bool = False,
                 system: str = SYSTEM_PROMPT) -> str:
  """The stock chat template: media placeholders first, then the question, then `assistant\\n`."""
  media = ("<|vision_bos|><|VIDEO|><|vision_eos|>" if video else "") + (
      "<|audio_bos|><|AUDIO|><|audio_eos|>" if audio else "")
  return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{media}{question}"
          "<|im_end|>\n<|im_start|>assistant\n")


class Understander:
  """A loaded thinker + processor answering questions about an audio clip and/or a video."""

  def __init__(self, model: Thinker, processor: Any):
    self.model = model
    self.processor = processor

  @classmethod
  def from_pretrained(cls, path: str, *, dtype: str = "bfloat16",
                      param_dtype: str = "bfloat16", attention: str = "auto") -> "Understander":
    """From a directory holding config.json, the weights and the processor files."""
    from aomni_jax.conversion.hf_qwen import load_thinker
    cfg = load_thinker_config(path, dtype=dtype, param_dtype=param_dtype, attention=attention)
    return cls(load_thinker(path, cfg), load_processor(path))

  def __call__(self, question: str, audio: np.ndarray | None = None,
               video: np.ndarray | None = None, *, video_fps: float | None = None,
               use_audio_in_video: bool = False, max_new_tokens: int = 256,
               temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> str:
    """audio: mono float samples at 16 kHz; video: uint8 frames [T, H, W, 3] or [T, 3, H, W].

    With `use_audio_in_video`, `audio` is the video's own sound track: the prompt holds only the
    video placeholder and the processor interleaves the two streams in time (TMRoPE), as the
    official understanding path does.
    """
    if use_audio_in_video and (audio is None or video is None):
      raise ValueError("use_audio_in_video needs the video and its sound track (audio)")
    if not isinstance(question, str) or not question.strip():
      raise ValueError("question must be a non-empty string")
    kwargs = {}
    if audio is not None:
      audio = np.asarray(audio, np.float32)
      if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"audio must be a non-empty mono 1-D array at {SAMPLE_RATE} Hz, "
                         f"got shape {audio.shape}")
      kwargs["audio"] = [audio]
    if video is not None:
      video = np.asarray(video)
      if video.ndim != 4 or 3 not in (video.shape[1], video.shape[-1]):
        raise ValueError(f"video must be frames [T, H, W, 3] or [T, 3, H, W], got {video.shape}")
      kwargs["videos"] = [video]
      if video_fps is not None:
        kwargs["fps"] = video_fps
    prompt = build_prompt(question, audio=audio is not None and not use_audio_in_video,
                          video=video is not None)
    inputs = process(self.processor, self.model.cfg, [prompt],
                     use_audio_in_video=use_audio_in_video, **kwargs)
    tokens = generate(self.model, inputs, max_new_tokens=max_new_tokens, temperature=temperature,
                      top_p=top_p, seed=seed)[0]
    stop = np.flatnonzero(tokens == self.model.cfg.eos_token_id)
    tokens = tokens[:stop[0]] if stop.size else tokens
    return self.processor.batch_decode([tokens.tolist()], skip_special_tokens=True)[0]


def understand(question: str, audio: np.ndarray | None = None, video: np.ndarray | None = None, *,
               model: Understander | str, **kwargs) -> str:
  """Answers `question` about the inputs; `model` is an Understander or a checkpoint directory."""
  if isinstance(model, str):
    model = Understander.from_pretrained(model)
  return model(question, audio=audio, video=video, **kwargs)
