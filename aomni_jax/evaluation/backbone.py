"""What every evaluation backbone (YAMNet, musicnn) returns, so metrics need not know which ran."""

from __future__ import annotations

import dataclasses
import io
import uuid
from typing import Callable, Protocol

from etils import epath
import numpy as np
import scipy.special


class BackboneMissingError(RuntimeError):
  """A package that carries an evaluation backbone's weights is not installed."""


@dataclasses.dataclass(frozen=True)
class ClipOutput:
  """Per-patch outputs for one clip: `embeddings` [P, D] float32, class `logits` [P, C]."""
  embeddings: np.ndarray
  logits: np.ndarray

  def class_probabilities(self) -> np.ndarray:
    """Clip-level [C] probabilities: mean over patches of the per-class sigmoid (multi-label)."""
    return np.mean(scipy.special.expit(self.logits), axis=0)


class Backbone(Protocol):
  """A classifier whose penultimate layer is the embedding; inputs are mono 16 kHz clips."""
  name: str  # shown next to every number computed from it

  def class_names(self) -> tuple[str, ...]:
    ...

  def __call__(self, waveforms: list[np.ndarray]) -> list[ClipOutput]:
    ...


def run_clips(waveforms: list[np.ndarray], to_patches: Callable[[np.ndarray], np.ndarray],
              run_patches: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
             ) -> list[ClipOutput]:
  """Cuts every clip into patches, runs all patches as one batch, and splits the outputs back."""
  patches = [to_patches(w) for w in waveforms]
  embeddings, logits = run_patches(np.concatenate(patches))
  bounds = np.cumsum([0] + [len(p) for p in patches])
  return [ClipOutput(embeddings[a:b], logits[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def run_in_batches(function: Callable, patches: np.ndarray,
                   batch: int) -> tuple[np.ndarray, np.ndarray]:
  """Applies a jitted `patches → (embeddings, logits)` to fixed-size, zero-padded batches, so
  it compiles once whatever the number of patches."""
  embeddings, logits = [], []
  for start in range(0, len(patches), batch):
    chunk = patches[start:start + batch]
    padding = [(0, batch - len(chunk))] + [(0, 0)] * (chunk.ndim - 1)
    embedding, logit = function(np.pad(chunk, padding))
    embeddings.append(np.asarray(embedding)[:len(chunk)])
    logits.append(np.asarray(logit)[:len(chunk)])
  return np.concatenate(embeddings), np.concatenate(logits)


def save_weights(path: str | epath.Path, arrays: dict[str, np.ndarray]) -> epath.Path:
  """Writes converted weights as .npz via a temporary name and a rename, so processes that
  convert at the same time never read a half-written file."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  staging = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
  staging.write_bytes(buffer.getvalue())
  staging.replace(path)
  return path
