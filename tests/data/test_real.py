"""Real branch: stems folder → edit pairs; every filter reports what it dropped."""

import csv
import os

import numpy as np
import soundfile as sf

from aomni_jax.data import loader
from aomni_jax.data import real
from aomni_jax.data import records
from tests.data.conftest import RATE, SHAPES, harmonic_tone, noise, small_build


def write_stems(root, clip_id, target, residual, rate=RATE, residual_rate=None):
  os.makedirs(os.path.join(root, clip_id))
  if target is not None:
    sf.write(os.path.join(root, clip_id, "target.wav"), np.atleast_2d(target).T, rate)
  sf.write(os.path.join(root, clip_id, "residual.flac"), np.atleast_2d(residual).T,
           residual_rate or rate)


def test_stems_folder_to_pairs_with_filter_report(tmp_path):
  root = str(tmp_path / "stems")
  os.makedirs(root)
  blip = np.concatenate([harmonic_tone(500, 0.05), np.zeros((1, 2 * RATE))], axis=1)
  cases = {  # clip_id: (label, target, residual, residual rate)
      "good": ("dog", harmonic_tone(300, 2.0), noise(2.0, 0)[:1], None),
      "silent": ("dog", np.zeros((1, 2 * RATE)), noise(2.0, 1)[:1], None),
      "resampled": ("dog", harmonic_tone(300, 2.0), noise(2.0, 2)[:1], 48000),
      "short": ("dog", harmonic_tone(300, 0.5), noise(0.5, 3)[:1], None),
      "blip": ("dog", blip, noise(2.05, 4)[:1], None),
      "cat": ("cat", harmonic_tone(300, 2.0), noise(2.0, 5)[:1], None),
      "lost": ("dog", None, noise(2.0, 6)[:1], None),
  }
  for clip_id, (_, target, residual, residual_rate) in cases.items():
    write_stems(root, clip_id, target, residual, residual_rate=residual_rate)
  with open(os.path.join(root, "labels.csv"), "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["clip_id", "label", "licence"])
    writer.writerows([clip_id, label, "CC-BY-4.0"] for clip_id, (label, *_) in cases.items())

  filters = real.StemFilters(allowed_labels=("dog",))
  out = str(tmp_path / "out")
  manifest, report = real.build_real_dataset(root, out, small_build(num_shards=1), filters,
                                             progress=False)
  assert report.kept == 1
  assert dict(report.dropped) == {"target_silent": 1, "residual_wrong_rate": 1, "too_short": 1,
                                  "inactive_target": 1, "label_not_allowed": 1,
                                  "target_missing": 1}
  assert manifest.dropped == dict(report.dropped)
  assert manifest.per_task == {"add": 1, "remove": 1, "extract": 1}
  assert manifest.licences == {"CC-BY-4.0": 2}

  source = loader.ExampleSource(records.Manifest.load(out).shard_paths(out))
  decoder = loader.ExampleDecoder(SHAPES)
  add, remove, extract = (decoder(source[i]) for i in range(3))
  np.testing.assert_allclose(add["target_audio"], remove["target_audio"] + extract["target_audio"],
                             atol=1e-6)


def test_active_fraction_separates_steady_sound_from_a_blip():
  steady = harmonic_tone(300, 2.0)
  blip = np.concatenate([harmonic_tone(300, 0.1), np.zeros((1, 2 * RATE))], axis=1)
  assert real.active_fraction(steady, RATE, 30) > 0.95
  assert real.active_fraction(blip, RATE, 30) < 0.1
