"""Label score and KL on the real recordings: the true label should win against the others."""

import numpy as np
import pytest

from aomni_jax.evaluation import fidelity
from aomni_jax.evaluation import labels
from aomni_jax.evaluation import yamnet

# Measured on the pool (83 scorable clips, 62 candidate labels, chance ≈ 0.02): the true label
# is first for 0.55 of the clips and in the top 3 for 0.72. The misses are mostly near
# neighbours (alarm clock / warning beep, tabla loop / percussion loop, factory noise).
TOP1_FLOOR, TOP3_FLOOR = 0.5, 0.65


def test_label_names_map_to_audioset_classes():
  names = yamnet.audioset_class_names()
  assert len(names) == 521
  named = lambda label: {names[i] for i in labels.classes_for_label(label, names)}
  assert {"Dog", "Bark"} <= named("dog barking")
  assert "Violin, fiddle" in named("violins")
  assert "Telephone bell ringing" in named("telephone bell ringing")
  assert named("glitchy robot") == set()


def test_label_score_ranks_the_true_label_first_for_most_real_clips(sound_pool, pool_outputs):
  """Every pool label competes; labels naming only the generic "Music" class are left out (they
  would outrank every instrument). A hit is a best candidate sharing a class with the truth, so
  "dog" and "dog barking" count as one."""
  clips, _ = sound_pool
  names = yamnet.audioset_class_names()
  generic = (names.index("Music"),)
  classes = {c.label: tuple(labels.classes_for_label(c.label, names)) for c in clips}
  candidates = {v for v in classes.values() if v and v != generic}
  ranks = []
  for clip, output in zip(clips, pool_outputs):
    truth = set(classes[clip.label])
    if not truth or classes[clip.label] == generic:
      continue
    probabilities = output.class_probabilities()
    ranked = sorted(candidates, key=lambda c: -labels.label_score(probabilities, list(c)))
    ranks.append(next(i for i, c in enumerate(ranked) if truth & set(c)))
  top1, top3 = np.mean(np.array(ranks) == 0), np.mean(np.array(ranks) < 3)
  print(f"top-1 {top1:.3f}, top-3 {top3:.3f} over {len(ranks)} clips, {len(candidates)} labels")
  assert len(ranks) >= 60 and len(candidates) >= 40
  assert top1 >= TOP1_FLOOR and top3 >= TOP3_FLOOR


def test_kl_is_zero_for_the_same_clip_and_larger_across_categories(sound_pool, pool_outputs):
  clips, _ = sound_pool
  dog = next(i for i, c in enumerate(clips) if c.label == "dog")
  other_dog = next(i for i, c in enumerate(clips) if c.label == "dog barking")
  music = next(i for i, c in enumerate(clips) if c.kind == "music")
  dist = [labels.class_distribution(pool_outputs[i].logits) for i in (dog, other_dog, music)]
  assert labels.kl_divergence(dist[0], dist[0]) == pytest.approx(0.0, abs=1e-9)
  assert 0.0 < labels.kl_divergence(dist[0], dist[1]) < labels.kl_divergence(dist[0], dist[2])


def test_a_label_without_classes_is_an_error_not_nan():
  with pytest.raises(fidelity.MetricInputError, match="names no class"):
    labels.label_score(np.full(521, 0.5), [])
