"""Datasets and precomputed features in a bucket: built, precomputed, read, resumed on `gs://`.

The bucket is the in-memory fake of tests/conftest.py. array_record opens `gs://` in its C++
reader, where that fake does not exist, so its data source is wrapped (`bucket_reader`): the
wrapper checks that it receives the URIs unchanged and reads the objects from local copies.
"""

import dataclasses
import multiprocessing.pool
import pathlib

import grain
import numpy as np
import pytest
from etils import epath

from aomni_jax.cli import data as data_cli
from aomni_jax.data import build
from aomni_jax.data import crops
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


def files(directory: str) -> dict[str, bytes]:
  """The files of a local folder or bucket prefix, by name (hidden ones too)."""
  return {p.name: p.read_bytes() for p in epath.Path(directory).iterdir() if p.is_file()}


def assert_no_local_uri_folder(tmp_path):
  assert not (tmp_path / "gs:").exists()


def test_build_writes_the_same_dataset_into_a_bucket(clip_folder, tiny_dataset, bucket_reader,
                                                     monkeypatch, tmp_path):
  # The fake bucket lives in this process: worker threads instead of processes.
  monkeypatch.setattr(build, "_pool", lambda config: multiprocessing.pool.ThreadPool(2))
  clips = sources.read_table(clip_folder)
  usable, dropped = build.validate_clips(clips, BUILD.checks, multiprocessing.pool.ThreadPool(2))
  build.write_dataset(build.plan_jobs(usable, BUILD, None), DATA, BUILD, dropped,
                      progress=False)
  assert files(DATA) == files(tiny_dataset)
  assert_no_local_uri_folder(tmp_path)


def test_precompute_from_and_into_a_bucket_equals_the_local_run(tiny_dataset, bucket_reader,
                                                                tmp_path):
  upload(tiny_dataset, DATA)
  local_out = str(tmp_path / "local_features")
  precompute.precompute(tiny_dataset, local_out, {"energy": energy}, batch_size=3,
                        shapes=SHAPES, progress=False)
  manifest = precompute.precompute(DATA, FEATURES, {"energy": energy}, batch_size=3,
                                   shapes=SHAPES, progress=False)
  assert manifest == records.Manifest.load(local_out) == records.Manifest.load(FEATURES)
  assert files(FEATURES) == files(local_out)
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


@pytest.mark.parametrize("where", ["bucket", "local"])
def test_a_failed_precompute_resumes_with_the_shards_left(tiny_dataset, bucket_reader, tmp_path,
                                                          where):
  upload(tiny_dataset, DATA)
  out = FEATURES if where == "bucket" else str(tmp_path / "features")
  shards = records.Manifest.load(DATA).shards
  calls = []

  def fails_on_the_second_shard(batch):
    calls.append(batch["example_index"])
    if len(calls) > 1:
      raise RuntimeError("preempted")
    return energy(batch)

  with pytest.raises(RuntimeError, match="preempted"):
    precompute.precompute(DATA, out, {"energy": fails_on_the_second_shard}, batch_size=64,
                          shapes=SHAPES, progress=False)
  assert sorted(files(out)) == [shards[0], records.counts_path(shards[0])]  # nothing partial
  calls.clear()
  counted = lambda batch: calls.append(batch["example_index"]) or energy(batch)
  manifest = precompute.precompute(DATA, out, {"energy": counted}, batch_size=64, shapes=SHAPES,
                                   progress=False)
  assert len(calls) == len(shards) - 1  # one batch per shard left, none for the done shard
  assert manifest.features == ["energy"] and manifest.shards == shards
  assert sorted(files(out)) == sorted(
      ["manifest.json", *shards, *(records.counts_path(shard) for shard in shards)])


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
  assert "/aomni-test/runs/r1/data/process_0.json" in fake_gcs.store  # in the bucket
  resumed = loader.make_train_iterator(DATA, 4, **kwargs)
  loader.restore_state(resumed, state)
  for want in expected:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])


def test_autoencoder_crops_read_a_bucket_like_a_folder(tiny_dataset, bucket_reader):
  upload(tiny_dataset, DATA)
  split = crops.split_signals(DATA, holdout_every=3)
  assert split == crops.split_signals(tiny_dataset, holdout_every=3) and split.heldout
  for want, got in zip(crops.evaluation_clips(tiny_dataset, split.heldout, 2, 4096, 2),
                       crops.evaluation_clips(DATA, split.heldout, 2, 4096, 2)):
    np.testing.assert_array_equal(want, got)


def test_a_bucket_folder_without_manifest_is_the_usual_error(bucket_reader):
  (epath.Path(DATA) / "shard-00000-of-00001.array_record").write_bytes(b"")
  with pytest.raises(FileNotFoundError,
                     match=f"^{DATA} has no manifest.json: not a finished dataset build$"):
    loader.make_dataset(DATA, 4, process_index=0, process_count=1)
  assert not bucket_reader


def test_inspect_reads_a_bucket_and_writes_its_preview_there(tiny_dataset, bucket_reader,
                                                             capsys):
  upload(tiny_dataset, DATA)
  assert data_cli.main(["inspect", "--data", DATA, "--examples", "1"]) == 0
  preview = files(f"{DATA}/preview")
  png, = [name for name in preview if name.endswith(".png")]
  stem = png.removesuffix(".png")
  assert sorted(preview) == [f"{stem}-input.wav", f"{stem}-target.wav", png]
  assert preview[png].startswith(b"\x89PNG") and f"{DATA}/preview/{png}" in capsys.readouterr().out


def test_a_missing_bucket_dataset_is_a_one_line_error(bucket_reader, capsys):
  assert data_cli.main(["inspect", "--data", DATA]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f"aomni-data: --data {DATA}: {DATA} has no manifest.json")
  assert err.count("\n") == 1


def test_a_clip_table_in_a_bucket_names_the_clips_next_to_it(fake_gcs):
  clips = [sources.Clip("rain.wav", "rain", "background"),
           sources.Clip("gs://other/beep.wav", "beep", "event", video="clips/beep.mp4")]
  sources.write_table(clips, "gs://aomni-test/corpus/clips.csv")
  read = sources.read_table("gs://aomni-test/corpus/clips.csv")
  assert [(c.path, c.video) for c in read] == [
      ("gs://aomni-test/corpus/rain.wav", ""),
      ("gs://other/beep.wav", "gs://aomni-test/corpus/clips/beep.mp4")]
  assert [c.label for c in read] == ["rain", "beep"]


def test_training_takes_a_bucket_dataset_and_refuses_a_bucket_default_root(
    tiny_dataset, bucket_reader, monkeypatch):
  from aomni_jax.config import ConfigError, load_config  # pylint: disable=g-import-not-at-top
  from aomni_jax.train import loop  # pylint: disable=g-import-not-at-top
  upload(tiny_dataset, DATA)
  config = load_config(str(pathlib.Path(__file__).parents[2] / "configs" / "tiny.py"))
  with_root = lambda root: dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                                 root=root))
  assert loop.resolve_data_dir(with_root(DATA)) == DATA
  with pytest.raises(ConfigError, match="has no manifest.json"):
    loop.resolve_data_dir(with_root(FEATURES))
  monkeypatch.setenv("AOMNI_DATA_DIR", "gs://aomni-test/cache")
  with pytest.raises(ConfigError, match="AOMNI_DATA_DIR='gs://aomni-test/cache'.*local folder"):
    loop.resolve_data_dir(with_root(""))
