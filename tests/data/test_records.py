"""Record schema: round trip, version check, manifest persistence."""

import msgpack
import numpy as np
import pytest

from aomni_jax.data import records


def test_record_round_trip_keeps_stems_examples_and_features():
  stem = (0.1 * np.random.default_rng(0).standard_normal((2, 1000))).astype(np.float32)
  examples = [{"task": "extract", "input": ["a"], "target": ["a"]}]
  features = {"vae_latents": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}
  data = records.encode_record("id-1", {"a": stem}, examples, {"labels": ["x"]}, 44100,
                               "wav_f32", features)
  record = records.decode_record(data)
  assert record["id"] == "id-1" and record["frames"] == 1000 and record["examples"] == examples
  np.testing.assert_array_equal(records.decode_stem(record, "a"), stem)
  np.testing.assert_array_equal(records.unpack_array(record["features"]["vae_latents"]),
                                features["vae_latents"])


def test_other_schema_versions_are_refused():
  data = msgpack.packb({"schema": records.SCHEMA_VERSION + 1})
  with pytest.raises(ValueError, match="schema"):
    records.decode_record(data)


def test_stems_of_different_length_are_refused():
  with pytest.raises(ValueError, match="differ in length"):
    records.encode_record("x", {"a": np.zeros((1, 10)), "b": np.zeros((1, 11))}, [], {}, 44100,
                          "flac16")


def test_manifest_round_trip_and_missing_manifest(tmp_path):
  manifest = records.Manifest(shards=["s"], records=1, examples=3, per_task={"add": 3},
                              per_label={"x": 3}, target_seconds=33.0, licences={"CC0": 2},
                              dropped={}, config={"seed": 0})
  manifest.save(str(tmp_path))
  assert records.Manifest.load(str(tmp_path)) == manifest
  with pytest.raises(FileNotFoundError, match="manifest"):
    records.Manifest.load(str(tmp_path / "nowhere"))
