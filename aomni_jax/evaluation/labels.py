"""Text–audio agreement without CLAP: a classifier's probability of the classes a prompt names.

A label ("dog barking", "violin") names classes of a classifier's vocabulary (AudioSet for YAMNet,
MagnaTagATune tags for musicnn) when every word of one of the class's synonyms occurs in it,
after a crude English stemming ("barking" → "bark", "dogs" → "dog"). The label score of a clip is
the highest probability among those classes. The KL divergence is the AudioLDM "KL" between the
class distributions of a generated clip and its reference, with our classifiers instead of PANNs.
"""

from __future__ import annotations

import re

import numpy as np
import scipy.special

from aomni_jax.evaluation.fidelity import MetricInputError

_EPS = 1e-6


def _stem(word: str) -> str:
  for suffix in ("ing", "es", "s"):
    if word.endswith(suffix) and len(word) - len(suffix) >= 3:
      return word[:-len(suffix)]
  return word


def _words(text: str) -> set[str]:
  return {_stem(w) for w in re.findall(r"[a-z0-9]+", text.lower())}


def _synonyms(class_name: str) -> list[set[str]]:
  """"Violin, fiddle" → [{violin}, {fiddle}]; parenthesised qualifiers are dropped."""
  plain = re.sub(r"\(.*?\)", "", class_name)
  return [_words(part) for part in plain.split(",") if _words(part)]


def classes_for_label(label: str, class_names: tuple[str, ...]) -> list[int]:
  """Indices of the classes whose name (one synonym, every word) occurs in `label`."""
  words = _words(label)
  return [index for index, name in enumerate(class_names)
          if any(synonym <= words for synonym in _synonyms(name))]


def label_score(probabilities: np.ndarray, classes: list[int]) -> float:
  """The highest probability among `classes` in one clip's [num_classes] probabilities."""
  if not classes:
    raise MetricInputError("the label names no class of this classifier")
  return float(np.max(np.asarray(probabilities)[classes]))


def top_k_hit(probabilities: np.ndarray, classes: list[int], k: int = 5) -> bool:
  """Whether one of `classes` is among the clip's k most probable classes."""
  if not classes:
    raise MetricInputError("the label names no class of this classifier")
  return bool(set(np.argsort(-np.asarray(probabilities))[:k]) & set(classes))


def class_distribution(logits: np.ndarray) -> np.ndarray:
  """A clip's distribution over classes: softmax of its patch-averaged logits [P, C] → [C]."""
  return scipy.special.softmax(np.mean(np.atleast_2d(logits), axis=0))


def kl_divergence(reference: np.ndarray, generated: np.ndarray) -> float:
  """KL(reference ‖ generated) in nats between two class distributions."""
  reference = np.asarray(reference, np.float64) + _EPS
  generated = np.asarray(generated, np.float64) + _EPS
  reference, generated = reference / reference.sum(), generated / generated.sum()
  return float(np.sum(reference * np.log(reference / generated)))
