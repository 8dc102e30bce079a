"""Precompute: features line up with their examples, noise keys are recorded and reproducible."""

import logging

import numpy as np
import pytest

from aomni_jax.config import load_config
from aomni_jax.data import loader
from aomni_jax.data import precompute
from aomni_jax.data import records
from tests.data.conftest import SHAPES


def energy(batch):
  return np.square(batch["target_audio"]).sum(axis=(1, 2))


def all_examples(data_dir, shapes=SHAPES, include_audio=True):
  source = loader.ExampleSource(records.Manifest.load(data_dir).shard_paths(data_dir))
  decoder = loader.ExampleDecoder(shapes, include_audio)
  return [decoder(source[i]) for i in range(len(source))]


@pytest.fixture(scope="module")
def with_energy(tiny_dataset, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("features"))
  precompute.precompute(tiny_dataset, out, {"energy": energy}, batch_size=3, seed=1,
                        shapes=SHAPES, progress=False)
  return out


def test_each_example_gets_its_own_feature_row(tiny_dataset, with_energy):
  manifest = records.Manifest.load(with_energy)
  assert manifest.features == ["energy", precompute.NOISE_KEY]
  assert manifest.examples == records.Manifest.load(tiny_dataset).examples
  for example in all_examples(with_energy):
    expected = energy({"target_audio": example["target_audio"][None]})[0]
    assert example["energy"] == pytest.approx(expected, rel=1e-5)


def test_noise_keys_are_per_example_and_reproducible(with_energy):
  examples = all_examples(with_energy, include_audio=False)
  keys = np.stack([ex[precompute.NOISE_KEY] for ex in examples])
  assert keys.dtype == np.uint32 and len(np.unique(keys, axis=0)) == len(keys)
  indices = np.arange(len(keys))
  np.testing.assert_array_equal(keys, precompute.noise_keys(1, indices))
  assert not np.array_equal(keys, precompute.noise_keys(2, indices))


def test_drop_stems_keeps_features_only(tiny_dataset, tmp_path):
  precompute.precompute(tiny_dataset, str(tmp_path), {"energy": energy}, batch_size=4,
                        drop_stems=True, shapes=SHAPES, progress=False)
  example = all_examples(str(tmp_path))[0]
  assert "target_audio" not in example and "energy" in example and "instruction" in example


def test_missing_modules_are_skipped_with_a_note(caplog):
  config = load_config("configs/tiny.py")
  with caplog.at_level(logging.WARNING):
    features = precompute.available_features(config, ["transcript_ids", "qwen_hidden"])
  assert set(features) == {"transcript_ids"}
  assert "skipping qwen_hidden" in caplog.text
  ids = features["transcript_ids"]({"transcript": np.array(["Hello there.", ""])})
  assert ids.shape == (2, config.model.transcript.seq_len)
  assert np.any(ids[0] != 0) and not np.any(ids[1] != 0)


@pytest.mark.slow  # building the VAE alone takes ~45 s on 2 CPU cores
def test_vae_latents_are_reproducible_from_the_recorded_key(tiny_dataset, tmp_path):
  config = load_config("configs/tiny.py")
  features = precompute.available_features(config, ["vae_latents"])
  shapes = loader.Shapes.for_model(config.model)
  precompute.precompute(tiny_dataset, str(tmp_path), features, batch_size=4, shapes=shapes,
                        progress=False)
  examples = all_examples(str(tmp_path), shapes)
  latents = np.stack([ex["vae_latents"] for ex in examples[:4]])
  assert latents.shape[1:] == (config.model.latent_length, config.model.vae.latent_dim)
  assert np.all(np.isfinite(latents))
  # Re-encoding one example with its recorded key reproduces its latents.
  batch = {"target_audio": np.stack([examples[2]["target_audio"]] * 4),
           "noise_key": np.stack([examples[2][precompute.NOISE_KEY]] * 4)}
  np.testing.assert_allclose(features["vae_latents"](batch)[0], examples[2]["vae_latents"],
                             rtol=1e-5, atol=1e-5)
