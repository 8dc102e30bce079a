"""`sync_features` for training: the Synchformer over each example's video, zeros where it has none.

The conditioner expects exactly that (official_spec §2.3): real features for V2A / V2M examples,
zero features for every other task. Each video is read from `video_start` for the mel window
(10 s, the official `seconds_total`) with the same decoder and recipe as generation
(`inference.video`), so a feature means the same in training and at inference. A video that
cannot be read gets zeros and a warning, as the official API does at inference.
"""

from __future__ import annotations

import logging
from typing import Sequence

import jax
import numpy as np
from flax import nnx

from aomni_jax.config import Config
from aomni_jax.models.synchformer import Synchformer, encode_video
from aomni_jax.video.decode import VideoReadError
from aomni_jax.video.inputs import read_video_inputs

_LOG = logging.getLogger(__name__)


class SyncFeatures:
  """(video paths, start seconds) → sync features [B, seq_len, input_dim] float32."""

  def __init__(self, synchformer: Synchformer | None, config: Config):
    m = config.model
    self.shape = (m.sync.seq_len, m.sync.input_dim)
    self.seconds = m.mel.window_seconds
    self.cfg = m.synchformer
    self._model = None if synchformer is None else nnx.split(synchformer)
    self._run = jax.jit(lambda graphdef, state, frames: encode_video(nnx.merge(graphdef, state),
                                                                     frames),
                        static_argnums=0)

  def __call__(self, videos: Sequence[str], starts: Sequence[float]) -> np.ndarray:
    out = np.zeros((len(videos),) + self.shape, np.float32)
    frames, rows = [], []
    for row, (video, start) in enumerate(zip(videos, starts)):
      if not str(video):
        continue
      if self._model is None:
        raise ValueError("examples have videos but the model directory has no 'synchformer' "
                         "component; convert synchformer_state_dict.pth with aomni-convert "
                         "--synchformer PATH")
      try:
        decoded = read_video_inputs(str(video), seconds=self.seconds, start=float(start),
                                    sync_fps=self.cfg.fps, sync_size=self.cfg.image_size)
      except VideoReadError as error:
        _LOG.warning("zero sync features for %s: %s", video, error)
        continue
      frames.append(decoded.sync_frames)
      rows.append(row)
    if frames:
      features = np.asarray(self._run(*self._model, np.stack(frames)))
      if features.shape[1:] != self.shape:
        raise ValueError(f"the Synchformer gives {features.shape[1:]} per clip, the sync head "
                         f"takes {self.shape}: model.synchformer and model.sync disagree")
      out[rows] = features
    return out
