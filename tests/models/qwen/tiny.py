"""Tiny random Qwen2.5-Omni thinkers and processors built locally (no hub access).

Two architectures are used so that nothing can be hard-wired to one: they differ in head counts,
GQA ratio, rope sections, window size, full-attention block indexes and depth.
"""

from __future__ import annotations

import copy

import numpy as np

from aomni_jax.models.qwen_omni import tiny as tiny_lib

_BASE = tiny_lib.HF_CONFIG


def tiny_config(variant: str) -> dict:
  """'a': the qwen_omni_spec §8 shape (3 layers); 'b': other heads, sections, windows, depth."""
  cfg = copy.deepcopy(_BASE)
  if variant == "b":
    cfg["text_config"].update(hidden_size=96, num_attention_heads=6, num_key_value_heads=3,
                              num_hidden_layers=4, intermediate_size=160,
                              rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                               "mrope_section": [4, 2, 2]})
    cfg["audio_config"].update(d_model=48, encoder_attention_heads=3, encoder_layers=3,
                               n_window=50, output_dim=96)
    cfg["vision_config"].update(hidden_size=48, num_heads=3, depth=4, window_size=56,
                                fullatt_block_indexes=[0, 3], out_hidden_size=96)
  elif variant != "a":
    raise ValueError(variant)
  return cfg


def perturbed_thinker(config: dict, seed: int = 0):
  """An HF thinker in fp32, eval mode, with every parameter randomised (biases/norms included)."""
  import torch
  from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration
  torch.manual_seed(seed)
  model = Qwen2_5OmniThinkerForConditionalGeneration(Qwen2_5OmniThinkerConfig(**config))
  gen = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      if p.ndim == 1:  # norms ~1, biases ~0 → make both visibly non-trivial
        p.copy_((1.0 if "norm" in name or "ln_" in name else 0.0) + 0.1 * noise)
      else:
        fan_in = int(np.prod(p.shape[1:])) if p.ndim > 1 else p.shape[0]
        scale = 1.0 if "embed" in name else fan_in ** -0.5
        p.copy_(scale * noise)
  return model.eval()


def make_processor(chunk_length: int = 30):
  """A Qwen2_5OmniProcessor over a byte-level tokenizer (one token per UTF-8 byte), a Whisper
  extractor and a Qwen2-VL (PIL) image processor.

  transformers' video processor needs torchvision, which this CPU image lacks, and without it
  5.x refuses to construct the omni processor at all (its class check resolves the video
  processor mapping). The check is skipped here, for the `None` video processor only; video
  tests build the pixel rows and the expanded prompt themselves.
  """
  from unittest import mock

  from transformers import (Qwen2_5OmniProcessor, Qwen2VLImageProcessorPil,
                            WhisperFeatureExtractor)
  from transformers.processing_utils import ProcessorMixin
  tokenizer = tiny_lib.byte_tokenizer()
  check = ProcessorMixin.check_argument_for_proper_class
  skip_none = lambda self, name, arg: None if arg is None else check(self, name, arg)
  with mock.patch.object(ProcessorMixin, "check_argument_for_proper_class", skip_none):
    return Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056),
        video_processor=None,
        feature_extractor=WhisperFeatureExtractor(
            feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400,
            chunk_length=chunk_length, return_attention_mask=True, dither=0.0),
        tokenizer=tokenizer)


def audio_tokens(mel_frames: int) -> int:
  return ((mel_frames - 1) // 2 + 1 - 2) // 2 + 1


def _chunks(values: np.ndarray, per_chunk: int) -> list[int]:
  """Sizes of the runs of `values` falling into successive [k·per_chunk, (k+1)·per_chunk)."""
  return np.bincount((np.asarray(values) // per_chunk).astype(int)).tolist()


def video_placeholder(grid_thw, second_per_grid: float, *, merge: int = 2,
                      audio_frames: int | None = None, per_second: int = 25,
                      seconds_per_chunk: int = 2) -> str:
  """The expanded `<|VIDEO|>` block, with the audio interleaved in 2-second chunks if given."""
  t, h, w = grid_thw
  per_frame = h * w // merge ** 2
  if audio_frames is None:
    return "<|vision_bos|>" + "<|VIDEO|>" * (t * per_frame) + "<|vision_eos|>"
  per_chunk = per_second * seconds_per_chunk
  video = _chunks(np.repeat(np.arange(t) * second_per_grid * per_second, per_frame), per_chunk)
  audio = _chunks(np.arange(audio_tokens(audio_frames)), per_chunk)
  body = ""
  for j in range(max(len(video), len(audio))):
    body += "<|VIDEO|>" * (video[j] if j < len(video) else 0)
    body += "<|AUDIO|>" * (audio[j] if j < len(audio) else 0)
  return "<|vision_bos|><|audio_bos|>" + body + "<|audio_eos|><|vision_eos|>"


def video_batch(processor, texts: list[str], grids: list[tuple[int, int, int]],
                second_per_grid: float, rng: np.random.Generator, audio=None) -> dict:
  """A batch as the omni processor would return it for videos (random normalised pixels)."""
  import torch
  batch = dict(processor.tokenizer(texts, padding=True, padding_side="left", return_tensors="pt"))
  rows = sum(int(np.prod(g)) for g in grids)
  batch["pixel_values_videos"] = torch.tensor(rng.standard_normal((rows, 3 * 2 * 14 * 14)),
                                              dtype=torch.float32)
  batch["video_grid_thw"] = torch.tensor(grids, dtype=torch.long)
  batch["video_second_per_grid"] = torch.tensor([second_per_grid] * len(grids))
  if audio is not None:
    feats = processor.feature_extractor(audio, sampling_rate=16000, return_attention_mask=True,
                                        padding="max_length", return_tensors="pt")
    batch["input_features"] = feats["input_features"]
    batch["feature_attention_mask"] = feats["attention_mask"]
  return batch
