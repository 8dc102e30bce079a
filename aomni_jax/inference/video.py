"""V2A / V2M inputs: a video file → Synchformer features (on the device) and the Qwen video.

One decode per request gives both streams (`video.inputs`): 25 fps frames at the Synchformer's
size, which the jitted Synchformer turns into [240, 768] sync features, and 50 uint8 frames at
224×224 for the Qwen prompt, whose `<|VIDEO|>` placeholder becomes one token per merged patch.
The official window is `seconds_total` = 10 s of video whatever the output duration; a shorter
clip is padded with its last frame, as the official reader does.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.cli.errors import UserError
from aomni_jax.config import ModelConfig
from aomni_jax.inference.pipeline import VIDEO_TASKS, Request
from aomni_jax.models.qwen_omni.config import VisionConfig
from aomni_jax.models.synchformer import Synchformer, encode_video
from aomni_jax.text.prompts import VIDEO_PLACEHOLDER
from aomni_jax.video.decode import VideoReadError, probe
from aomni_jax.video.inputs import FRAME_SIZE, QWEN_FPS, read_video_inputs
from aomni_jax.video.qwen_frames import video_token_count

VIDEO_TOKEN = "<|VIDEO|>"


def video_seconds(cfg: ModelConfig) -> float:
  """The video window: the official `seconds_total` (the mel window, 10 s)."""
  return cfg.mel.window_seconds


def qwen_frame_count(cfg: ModelConfig) -> int:
  return round(video_seconds(cfg) * QWEN_FPS)


def check_video(request: Request) -> None:
  """Fails early (ValueError naming the file) for a video task whose file cannot be used."""
  if request.task not in VIDEO_TASKS or request.video_frames is not None:
    return
  if request.video is None:
    if request.sync_features is None:
      raise ValueError(f"{request.task} needs a video file (Request.video) or precomputed "
                       "sync_features")
    return
  try:
    probe(request.video)
  except VideoReadError as error:
    raise ValueError(str(error)) from error  # it names the file


def bare_video_placeholder(request: Request) -> bool:
  """A video task without a video: its prompt keeps one `<|VIDEO|>` token and no video."""
  return request.task in VIDEO_TASKS and request.video is None and request.video_frames is None


def expand_video_placeholder(text: str, request: Request, cfg: ModelConfig,
                             vision: VisionConfig) -> str:
  """The prompt with `<|VIDEO|>` repeated once per video token, when the request has a video."""
  if request.task not in VIDEO_TASKS or bare_video_placeholder(request):
    return text
  if VIDEO_PLACEHOLDER not in text:
    raise ValueError(f"the {request.task} prompt lacks the video placeholder")
  count = video_token_count(qwen_frame_count(cfg), FRAME_SIZE, FRAME_SIZE, vision)
  return text.replace(VIDEO_TOKEN, VIDEO_TOKEN * count)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _sync_features(graphdef: nnx.GraphDef, state: nnx.State, frames: jax.Array) -> jax.Array:
  return encode_video(nnx.merge(graphdef, state), frames)


class VideoFrontEnd:
  """Decodes the videos of a batch and runs the Synchformer on them (one jitted call)."""

  def __init__(self, cfg: ModelConfig, synchformer: Synchformer | None, *,
               recipe: str = "mmaudio"):
    self.cfg = cfg
    self.synchformer = None if synchformer is None else nnx.split(synchformer)
    self.recipe = recipe

  def check(self, request: Request) -> None:
    """Fails early for a video request this model cannot serve (bad file, no Synchformer)."""
    check_video(request)
    if self._needs_decoding(request) and self.synchformer is None:
      raise UserError(f"{request.task} from a video file needs the 'synchformer' component; "
                      "convert synchformer_state_dict.pth with aomni-convert --synchformer PATH")

  @staticmethod
  def _needs_decoding(request: Request) -> bool:
    return (request.task in VIDEO_TASKS and request.video is not None
            and request.video_frames is None)

  def prepare(self, requests: Sequence[Request]) -> list[Request]:
    """Fills `sync_features` and `video_frames` of every video request that has a file."""
    todo = [i for i, r in enumerate(requests) if self._needs_decoding(r)]
    if not todo:
      return list(requests)
    for i in todo:
      self.check(requests[i])
    sf = self.cfg.synchformer
    decoded = []
    for i in todo:
      try:
        decoded.append(read_video_inputs(requests[i].video, seconds=video_seconds(self.cfg),
                                         recipe=self.recipe, sync_fps=sf.fps,
                                         size=FRAME_SIZE, sync_size=sf.image_size))
      except VideoReadError as error:
        raise ValueError(str(error)) from error  # it names the file
    frames = jnp.asarray(np.stack([d.sync_frames for d in decoded]))
    features = np.asarray(_sync_features(*self.synchformer, frames))
    out = list(requests)
    for i, d, f in zip(todo, decoded, features):
      out[i] = dataclasses.replace(out[i], sync_features=f, video_frames=d.qwen_frames)
    return out
