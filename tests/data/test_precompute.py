"""Precompute: features line up with their examples across shards; stems can be dropped; the
project's feature groups are named and checked (their values: tests/train/test_frozen.py)."""

import numpy as np
import pytest

from aomni_jax.config import load_config
from aomni_jax.data import loader
from aomni_jax.data import precompute
from aomni_jax.data import records
from tests.data.conftest import SHAPES


def energy(batch):
  return {"energy": np.square(batch["target_audio"]).sum(axis=(1, 2)),
          "doubled": 2 * np.square(batch["target_audio"]).sum(axis=(1, 2))}


def all_examples(data_dir, shapes=SHAPES, include_audio=True):
  source = loader.ExampleSource(records.Manifest.load(data_dir).shard_paths(data_dir))
  decoder = loader.ExampleDecoder(shapes, include_audio)
  return [decoder(source[i]) for i in range(len(source))]


@pytest.fixture(scope="module")
def with_energy(tiny_dataset, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("features"))
  precompute.precompute(tiny_dataset, out, {"energy": energy}, batch_size=3, shapes=SHAPES,
                        progress=False)
  return out


def test_each_example_gets_its_own_feature_rows(tiny_dataset, with_energy):
  manifest = records.Manifest.load(with_energy)
  assert manifest.features == ["doubled", "energy"]
  assert manifest.examples == records.Manifest.load(tiny_dataset).examples
  assert len(manifest.shards) > 1
  for example in all_examples(with_energy):
    expected = energy({"target_audio": example["target_audio"][None]})["energy"][0]
    assert example["energy"] == pytest.approx(expected, rel=1e-5)
    assert example["doubled"] == pytest.approx(2 * expected, rel=1e-5)


def test_processes_split_the_shards_and_the_last_writes_the_manifest(tiny_dataset, tmp_path):
  out = str(tmp_path)
  first = precompute.precompute(tiny_dataset, out, {"energy": energy}, batch_size=4,
                                shapes=SHAPES, process_index=0, process_count=2, progress=False)
  assert first is None  # shard 1 is the other process's
  second = precompute.precompute(tiny_dataset, out, {"energy": energy}, batch_size=4,
                                 shapes=SHAPES, process_index=1, process_count=2, progress=False)
  assert second.examples == records.Manifest.load(tiny_dataset).examples


def test_drop_stems_keeps_features_only(tiny_dataset, tmp_path):
  precompute.precompute(tiny_dataset, str(tmp_path), {"energy": energy}, batch_size=4,
                        drop_stems=True, shapes=SHAPES, progress=False)
  example = all_examples(str(tmp_path))[0]
  assert "target_audio" not in example and "energy" in example and "instruction" in example


def test_unknown_feature_groups_are_refused():
  config = load_config("configs/tiny.py")
  with pytest.raises(ValueError, match="vae_latents"):
    precompute.model_features(config, stage=None, names=["vae_latents"])
  ids = precompute.model_features(config, None, ["transcript_ids"])["transcript_ids"](
      {"transcript": np.array(["Hello there.", ""])})["transcript_ids"]
  assert ids.shape == (2, config.model.transcript.seq_len)
  assert np.any(ids[0] != 0) and not np.any(ids[1] != 0)
