"""Datasets and precomputed features in a bucket: built, precomputed, read, resumed on `gs://`.

The bucket is the in-memory fake of tests/conftest.py. array_record opens `gs://` in its C++
reader, where that fake does not exist, so its data source is wrapped (`bucket_reader`): the
wrapper checks that it receives the URIs unchanged and reads the objects from local copies.
"""

import multiprocessing.pool
import os

import grain
import numpy as np
import pytest
from etils import epath

from aomni_jax.data import build
from aomni_jax.data import loader
from aomni_jax.data import precompute
from aomni_jax.data import records
from aomni_jax.data import sources
from tests.data.conftest import BUILD, SHAPES

DATA = "gs://aomni-test/data/tiny"
FEATURES = "gs://aomni-test/features/tiny"


def energy(batch):
  return {"energy": np.square(batch["target_audio"]).sum(axis=(1, 2))}


@pytest.fixture
def bucket_reader(fake_gcs, monkeypatch, tmp_path):
  """The `gs://` paths array_record was asked to read, in order."""
  real_source, requested = grain.sources.ArrayRecordDataSource, []

  def source(paths, *args, **kwargs):
    local = []
    for path in paths:
      assert isinstance(path, str), f"array_record gets strings, got {path!r}"
      if path.startswith("gs://"):
        requested.append(path)
        copy = tmp_path / "array_record_reads" / path.removeprefix("gs://")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(epath.Path(path).read_bytes())
        path = str(copy)
      assert "gs:" not in path, f"a mangled URI reached array_record: {path}"
      local.append(path)
    return real_source(local, *args, **kwargs)

  monkeypatch.setattr(grain.sources, "ArrayRecordDataSource", source)
  monkeypatch.chdir(tmp_path)  # a URI taken for a relative path would land here
  return requested


def upload(local_dir: str, uri: str) -> None:
  for file in epath.Path(local_dir).iterdir():
    (epath.Path(uri) / file.name).write_bytes(file.read_bytes())


def bucket_files(fake_gcs, prefix: str) -> dict[str, bytes]:
  """Objects under `prefix` (a gs:// URI), by name."""
  root = "/" + prefix.removeprefix("gs://") + "/"
  return {key.removeprefix(root): value.getvalue() for key, value in fake_gcs.store.items()
          if key.startswith(root)}


def local_files(directory: str) -> dict[str, bytes]:
  return {p.name: p.read_bytes() for p in epath.Path(directory).iterdir() if p.is_file()}


def assert_no_local_uri_folder(tmp_path):
  assert not (tmp_path / "gs:").exists()


def test_build_writes_the_same_dataset_into_a_bucket(clip_folder, tiny_dataset, bucket_reader,
                                                     fake_gcs, monkeypatch, tmp_path):
  # The fake bucket lives in this process: worker threads instead of processes.
  monkeypatch.setattr(build, "_pool", lambda config: multiprocessing.pool.ThreadPool(2))
  clips = sources.read_table(clip_folder)
  usable, dropped = build.validate_clips(clips, BUILD.checks, multiprocessing.pool.ThreadPool(2))
  build.write_dataset(build.plan_jobs(usable, BUILD, None), DATA, BUILD, dropped,
                      progress=False)
  assert bucket_files(fake_gcs, DATA) == local_files(tiny_dataset)
  assert_no_local_uri_folder(tmp_path)


def test_precompute_from_and_into_a_bucket_equals_the_local_run(tiny_dataset, bucket_reader,
                                                                fake_gcs, tmp_path):
  upload(tiny_dataset, DATA)
  local_out = str(tmp_path / "local_features")
  precompute.precompute(tiny_dataset, local_out, {"energy": energy}, batch_size=3,
                        shapes=SHAPES, progress=False)
  manifest = precompute.precompute(DATA, FEATURES, {"energy": energy}, batch_size=3,
                                   shapes=SHAPES, progress=False)
  assert manifest == records.Manifest.load(local_out) == records.Manifest.load(FEATURES)
  assert bucket_files(fake_gcs, FEATURES) == local_files(local_out)
  kwargs = {"seed": 3, "process_index": 0, "process_count": 1, "shapes": SHAPES,
            "num_epochs": 1}
  for want, got in zip(loader.make_dataset(local_out, 4, **kwargs),
                       loader.make_dataset(FEATURES, 4, **kwargs), strict=True):
    assert want.keys() == got.keys() and "energy" in got
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])
  shards = records.Manifest.load(tiny_dataset).shards
  assert {f"{DATA}/{s}" for s in shards} | {f"{FEATURES}/{s}" for s in shards} == set(
      bucket_reader)
  assert_no_local_uri_folder(tmp_path)


def test_a_failed_precompute_into_a_bucket_resumes_with_the_shards_left(tiny_dataset,
                                                                       bucket_reader, fake_gcs):
  upload(tiny_dataset, DATA)
  shards = records.Manifest.load(DATA).shards
  calls = []

  def fails_on_the_second_shard(batch):
    calls.append(batch["example_index"])
    if len(calls) > 1:
      raise RuntimeError("preempted")
    return energy(batch)

  with pytest.raises(RuntimeError, match="preempted"):
    precompute.precompute(DATA, FEATURES, {"energy": fails_on_the_second_shard},
                          batch_size=64, shapes=SHAPES, progress=False)
  first = shards[0].removesuffix(".array_record")
  assert sorted(bucket_files(fake_gcs, FEATURES)) == [f"{first}.array_record",
                                                     f"{first}.counts.npy"]
  calls.clear()
  manifest = precompute.precompute(DATA, FEATURES, {"energy": lambda b: calls.append(b) or
                                                    energy(b)},
                                   batch_size=64, shapes=SHAPES, progress=False)
  assert len(calls) == len(shards) - 1  # one batch per shard left, none for the done shard
  assert manifest.features == ["energy"] and manifest.shards == shards
  assert sorted(bucket_files(fake_gcs, FEATURES)) == sorted(
      ["manifest.json"] + [s for shard in shards for s in
                           (shard, records.counts_path(shard))])


def test_iterator_state_is_saved_to_and_restored_from_a_bucket(tiny_dataset, bucket_reader,
                                                               fake_gcs):
  upload(tiny_dataset, DATA)
  kwargs = {"seed": 5, "process_index": 0, "process_count": 1, "shapes": SHAPES,
            "worker_count": 0}
  state = "gs://aomni-test/runs/r1/data/process_0.json"
  iterator = loader.make_train_iterator(DATA, 4, **kwargs)
  next(iterator)
  loader.save_state(iterator, state)
  expected = [next(iterator) for _ in range(2)]
  assert "/aomni-test/runs/r1/data/process_0.json" in fake_gcs.store
  resumed = loader.make_train_iterator(DATA, 4, **kwargs)
  loader.restore_state(resumed, state)
  for want in expected:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])


def test_a_bucket_folder_without_manifest_is_the_usual_error(bucket_reader, fake_gcs):
  (epath.Path(DATA) / "shard-00000-of-00001.array_record").write_bytes(b"")
  with pytest.raises(FileNotFoundError,
                     match=f"^{DATA} has no manifest.json: not a finished dataset build$"):
    loader.make_dataset(DATA, 4, process_index=0, process_count=1)
  assert not bucket_reader
