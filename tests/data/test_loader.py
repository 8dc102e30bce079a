"""Loader: fixed shapes, determinism, per-epoch shuffle, disjoint process shards, resume."""

import itertools

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from aomni_jax.data import loader
from aomni_jax.data import records
from aomni_jax.data import templates
from tests.data.conftest import SHAPES

BATCH = 4


def batches(data_dir, count, **kwargs):
  kwargs = {"seed": 0, "process_index": 0, "process_count": 1, "shapes": SHAPES} | kwargs
  iterator = iter(loader.make_dataset(data_dir, BATCH, **kwargs))
  return [next(iterator) for _ in range(count)]


def test_batches_have_fixed_shapes_and_documented_keys(tiny_dataset):
  for batch in batches(tiny_dataset, 3):
    assert batch["mel_audio"].shape == (BATCH, SHAPES.mel_frames)
    assert batch["target_audio"].shape == (BATCH, 2, SHAPES.target_frames)
    assert batch["mel_audio"].dtype == batch["target_audio"].dtype == np.float32
    assert batch["task_id"].dtype == np.int32 and batch["example_index"].dtype == np.int64
    assert set(batch["instruction"]) and batch["transcript"].shape == (BATCH,)
    assert all(0 <= t < len(templates.TASKS) for t in batch["task_id"])


def test_same_seed_same_batches_other_seed_other_order(tiny_dataset):
  first, again = batches(tiny_dataset, 3), batches(tiny_dataset, 3)
  other = batches(tiny_dataset, 3, seed=1)
  for a, b in zip(first, again):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  order = lambda bs: np.concatenate([b["example_index"] for b in bs]).tolist()
  assert order(first) != order(other)


def test_each_epoch_is_a_new_permutation(tiny_dataset):
  total = records.Manifest.load(tiny_dataset).examples
  per_epoch = total // BATCH
  stream = loader.make_dataset(tiny_dataset, 1, seed=0, process_index=0, process_count=1,
                               shapes=SHAPES, include_audio=False)
  indices = [int(b["example_index"][0]) for b in itertools.islice(stream, 2 * total)]
  epoch_1, epoch_2 = indices[:total], indices[total:]
  assert sorted(epoch_1) == sorted(epoch_2) == list(range(total))
  assert epoch_1 != epoch_2 and per_epoch > 0


def test_two_processes_get_disjoint_halves(tiny_dataset):
  total = records.Manifest.load(tiny_dataset).examples
  seen = []
  for process in (0, 1):
    stream = loader.make_dataset(tiny_dataset, 1, seed=7, num_epochs=1, process_index=process,
                                 process_count=2, shapes=SHAPES, include_audio=False)
    seen.append([int(b["example_index"][0]) for b in stream])
  assert len(seen[0]) == len(seen[1]) == total // 2
  assert not set(seen[0]) & set(seen[1])


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_from_saved_state_gives_the_same_next_batches(tiny_dataset, tmp_path, workers):
  kwargs = {"seed": 5, "process_index": 0, "process_count": 1, "shapes": SHAPES,
            "worker_count": workers}
  iterator = loader.make_train_iterator(tiny_dataset, BATCH, **kwargs)
  for _ in range(3):
    next(iterator)
  loader.save_state(iterator, str(tmp_path / "process_0.json"))
  expected = [next(iterator) for _ in range(3)]
  resumed = loader.make_train_iterator(tiny_dataset, BATCH, **kwargs)
  loader.restore_state(resumed, str(tmp_path / "process_0.json"))
  for want in expected:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(want[key], got[key])
  for it in (iterator, resumed):
    if hasattr(it, "close"):
      it.close()


def test_to_global_arrays_shards_numeric_leaves(tiny_dataset):
  batch, = batches(tiny_dataset, 1)
  mesh = Mesh(np.array(jax.devices()[:BATCH]), ("data",))
  arrays = loader.to_global_arrays(batch, NamedSharding(mesh, PartitionSpec("data")))
  assert isinstance(arrays["target_audio"], jax.Array)
  assert arrays["target_audio"].shape == batch["target_audio"].shape
  assert len(arrays["target_audio"].sharding.device_set) == BATCH
  np.testing.assert_array_equal(np.asarray(arrays["mel_audio"]), batch["mel_audio"])
  assert arrays["instruction"] is batch["instruction"]


def test_too_small_dataset_is_a_clear_error(tiny_dataset):
  with pytest.raises(ValueError, match="cannot fill one batch"):
    loader.make_dataset(tiny_dataset, 10_000, process_index=0, process_count=1)


def test_held_out_split_takes_whole_records_and_is_disjoint(tiny_dataset):
  paths = records.Manifest.load(tiny_dataset).shard_paths(tiny_dataset)
  everything = loader.ExampleSource(paths)
  train = loader.ExampleSource(paths, "train", eval_fraction=0.3)
  held = loader.ExampleSource(paths, "eval", eval_fraction=0.3)
  train_ids = {train[i][2] for i in range(len(train))}
  held_ids = {held[i][2] for i in range(len(held))}
  assert held_ids and train_ids and not train_ids & held_ids
  assert train_ids | held_ids == set(range(len(everything)))
  # Every example of a held-out record is held out (no stems shared across the split).
  record_of = {i: everything[i][0] for i in range(len(everything))}
  assert not {record_of[i] for i in train_ids} & {record_of[i] for i in held_ids}
  assert 0.1 < len(held_ids) / len(everything) < 0.6
  with pytest.raises(ValueError, match="split"):
    loader.ExampleSource(paths, "test")
