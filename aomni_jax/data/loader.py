"""Training input pipeline: ArrayRecord shards → grain → fixed-shape numpy batches → global arrays.

The dataset directory may be a bucket (`gs://b/data`): array_record reads the shards from it.

Pipeline (grain Dataset API): example index over all shards → shuffle(seed) per epoch → repeat
→ slice [process_index::process_count] → decode → batch → worker processes. Each epoch is
trimmed to a multiple of the process count, so within an epoch the processes see disjoint
examples and the same number of batches. The iterator state (`get_state`/`set_state`, saved as
JSON) resumes mid-epoch with exactly the batches that would have come next.

Batch keys (B = per-process batch size):
  example_index int64 [B]            position in the dataset (stable across runs; for debugging)
  task_id       int32 [B]            index into `templates.TASKS`
  instruction   str   [B]            the user turn (`templates.user_text`); system prompt by task
  transcript    str   [B]            TTS transcript, "" for other tasks
  label         str   [B]            the edited / generated sound's label
  video         str   [B]            V2A / V2M: the example's video file, "" for other tasks
  video_start   float32 [B]          where the target audio starts in that video (seconds)
  mel_audio     float32 [B, 441000]  mono 44.1 kHz input for the mel path: the first 10 s of
                                     the source (zeros for T2A/T2M/TTS, as the official API)
  target_audio  float32 [B, 2, 485100]  stereo 44.1 kHz target, 11 s (omitted when stems were
                                     dropped after precompute)
  <feature>     any [B, ...]         each precomputed feature (e.g. `qwen_hidden`, `latent_mean`)
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import sys

import grain
import numpy as np
from etils import epath

from aomni_jax.data import records
from aomni_jax.data import templates


def parse_absl_flags() -> None:
  """grain's worker processes read absl flags; with JAX installed they must be parsed first."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(sys.argv[:1])


@dataclasses.dataclass(frozen=True)
class Shapes:
  """Fixed batch shapes (44.1 kHz): 10 s of mono for the mel path, 11 s of stereo target."""
  mel_frames: int = 441000
  target_frames: int = 485100
  target_channels: int = 2

  @classmethod
  def for_model(cls, model) -> Shapes:
    """Shapes a model config consumes (`config.model`), so small configs decode less audio."""
    return cls(mel_frames=model.mel.num_samples, target_frames=model.sample_size,
               target_channels=model.vae.audio_channels)


SPLITS = ("all", "train", "eval")
_SIDECAR_READERS = 16  # a bucket answers each count sidecar in tens of ms; thousands of shards


def is_held_out(record_index: np.ndarray, eval_fraction: float) -> np.ndarray:
  """Whether each record belongs to the validation split: a fixed hash of its index, so the
  split does not depend on shuffling, seeds or process count, and all examples made from one
  recording (add / remove / extract / T2A of a mixture) fall on the same side."""
  hashed = (np.asarray(record_index, np.uint64) * np.uint64(0x9E3779B1)) % np.uint64(2**32)
  return hashed < np.uint64(int(eval_fraction * 2**32))


class ExampleSource:
  """Random access to examples (several per record), indexed by the shards' count sidecars.

  `split`: "all", or "train" / "eval" with `eval_fraction` of the records held out
  (`is_held_out`); the example index stays the one of the whole dataset.
  """

  def __init__(self, shard_paths: list[str], split: str = "all", eval_fraction: float = 0.0):
    if split not in SPLITS:
      raise ValueError(f"split {split!r} is not one of {SPLITS}")
    self._records = grain.sources.ArrayRecordDataSource(shard_paths)
    with concurrent.futures.ThreadPoolExecutor(_SIDECAR_READERS) as pool:  # one request each
      counts = np.concatenate(list(pool.map(records.read_counts, shard_paths)))
    self._record_of = np.repeat(np.arange(len(counts)), counts)
    self._slot_of = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    self._index = np.arange(counts.sum())
    if split != "all":
      keep = is_held_out(self._record_of, eval_fraction) == (split == "eval")
      self._record_of, self._slot_of = self._record_of[keep], self._slot_of[keep]
      self._index = self._index[keep]

  def __len__(self) -> int:
    return len(self._record_of)

  def __getitem__(self, index: int) -> tuple[bytes, int, int]:
    """Returns (record bytes, example slot within the record, example index)."""
    return (self._records[int(self._record_of[index])], int(self._slot_of[index]),
            int(self._index[index]))


class ExampleDecoder:
  """Turns an `ExampleSource` item into one example dict of fixed-shape numpy arrays."""

  def __init__(self, shapes: Shapes = Shapes(), include_audio: bool = True):
    self.shapes = shapes
    self.include_audio = include_audio

  def __call__(self, item: tuple[bytes, int, int]) -> dict[str, np.ndarray]:
    data, slot, index = item
    record = records.decode_record(data)
    ex = record["examples"][slot]
    out = {
        "example_index": np.int64(index),
        "task_id": np.int32(templates.task_id(ex["task"])),
        "instruction": np.str_(ex["instruction"]),
        "transcript": np.str_(ex["transcript"]),
        "label": np.str_(ex["label"]),
        "video": np.str_(ex.get("video", "")),
        "video_start": np.float32(ex.get("video_start", 0.0)),
    }
    if self.include_audio and record["stems"]:
      stems = {name: records.decode_stem(record, name) for name in set(ex["input"] + ex["target"])}
      out["mel_audio"] = self._mel_input(stems, ex["input"])
      out["target_audio"] = self._target(stems, ex["target"])
    for name, packed in record["features"].items():
      out[name] = records.unpack_array(packed)[slot]
    return out

  def _mel_input(self, stems: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    audio = np.zeros(self.shapes.mel_frames, np.float32)
    if names:
      mono = sum(stems[n] for n in names).mean(axis=0)[:self.shapes.mel_frames]
      audio[:len(mono)] = mono
    return audio

  def _target(self, stems: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    channels, frames = self.shapes.target_channels, self.shapes.target_frames
    audio = np.zeros((channels, frames), np.float32)
    for name in names:
      stem = stems[name][:, :frames]
      audio[:, :stem.shape[1]] += np.broadcast_to(stem, (channels, stem.shape[1]))
    return audio


def make_dataset(data_dir: str, batch_size: int, *, seed: int = 0, num_epochs: int | None = None,
                 process_index: int | None = None, process_count: int | None = None,
                 worker_count: int = 0, read_threads: int = 2, prefetch_batches: int = 2,
                 shapes: Shapes = Shapes(), include_audio: bool = True, split: str = "all",
                 eval_fraction: float = 0.0, start_batch: int = 0) -> grain.IterDataset:
  """The per-process batch stream; `process_*` default to this JAX process and the job size.

  Global batch n is examples [n·B, (n + 1)·B) of the shuffled stream whatever the process count:
  process p reads the p-th of its `process_count` consecutive chunks. So a run resumed on another
  number of hosts sees the same global batches, starting at `start_batch`.

  Elements are whole batches of several MB, so read-ahead is counted in batches: each process
  (the main one, or each of `worker_count` workers) decodes with `read_threads` threads and
  keeps `prefetch_batches` ready. grain's defaults (16 threads, 500 elements) suit KB records.
  """
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  (only needed when not given explicitly)
    process_index, process_count = jax.process_index(), jax.process_count()
  manifest = records.Manifest.load(data_dir)
  dataset = grain.MapDataset.source(ExampleSource(manifest.shard_paths(data_dir), split,
                                                  eval_fraction))
  per_epoch = (len(dataset) // process_count) * process_count
  if per_epoch < process_count * batch_size:
    raise ValueError(f"{data_dir}: {len(dataset)} examples ({split} split) cannot fill one batch "
                     f"of {batch_size} on each of {process_count} processes")
  dataset = dataset[:per_epoch].shuffle(seed).repeat(num_epochs)
  dataset = dataset.map(ExampleDecoder(shapes, include_audio))
  dataset = dataset.batch(batch_size, drop_remainder=True)
  dataset = dataset[start_batch * process_count + process_index::process_count]
  iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                                        prefetch_buffer_size=prefetch_batches))
  if worker_count > 0:
    parse_absl_flags()
    iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=worker_count, per_worker_buffer_size=prefetch_batches))
  return iterable


def make_train_iterator(data_dir: str, batch_size: int, *, seed: int = 0,
                        worker_count: int = 2, **kwargs) -> grain.DatasetIterator:
  """An endless iterator of per-process batches (keys in the module docstring).

  Save `iterator.get_state()` with the checkpoint (see `save_state`) and call
  `iterator.set_state(...)` after restoring to continue with the same next batches.
  """
  return iter(make_dataset(data_dir, batch_size, seed=seed, worker_count=worker_count, **kwargs))


def save_state(iterator: grain.DatasetIterator, path: str) -> None:
  """Writes the iterator position as JSON (one file per process, next to the checkpoint, which
  may be in a bucket)."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(iterator.get_state()))


def restore_state(iterator: grain.DatasetIterator, path: str) -> None:
  iterator.set_state(json.loads(epath.Path(path).read_text()))


def to_global_arrays(batch: dict[str, np.ndarray], sharding) -> dict:
  """Assembles per-process numeric leaves into global `jax.Array`s sharded over the batch axis
  (e.g. `NamedSharding(mesh, P(("data", "fsdp")))`); string leaves stay host-side numpy."""
  import jax  # pylint: disable=g-import-not-at-top
  return {key: value if value.dtype.kind in "US" else
          jax.make_array_from_process_local_data(sharding, value)
          for key, value in batch.items()}
