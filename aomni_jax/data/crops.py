"""Audio crops for autoencoder training, from the same record shards the DiT trains on.

A *signal* is one distinct audio a record holds for its examples: a stem or a sum of stems (a
mixture gives its background, its event and their sum). Records are split by source recording:
every `holdout_every`-th record is held out together with every other record that uses one of
its source clips, so no held-out recording is heard in training. Sources shared by more than a
quarter of the records (the General MIDI soundfont behind every style pair, a synthesiser rather
than a recording) do not link records.

Training crops are drawn by grain (`random_map`, seeded per element), so the stream — and a
resumed stream, through the iterator state — is a pure function of the seed.
"""

from __future__ import annotations

import collections
import dataclasses

import grain
import numpy as np

from aomni_jax.audio import dsp
from aomni_jax.data import loader, records

_SHARED_SOURCE_FRACTION = 0.25
_SILENCE = 1e-4  # |sample| below this counts as silence when finding the active span


@dataclasses.dataclass(frozen=True)
class Signal:
  record: int  # index over all records of the dataset's shards
  stems: tuple[str, ...]  # summed


@dataclasses.dataclass(frozen=True)
class Split:
  train: list[Signal]
  heldout: list[Signal]


def _signals(record: dict, index: int) -> list[Signal]:
  stem_sets = {tuple(sorted(ex[role])) for ex in record["examples"] for role in ("input", "target")
               if ex[role]}
  return [Signal(index, stems) for stems in sorted(stem_sets)]


def split_signals(data_dir: str, holdout_every: int) -> Split:
  """All signals of the dataset, split into training and held-out by source recording."""
  manifest = records.Manifest.load(data_dir)
  source = grain.sources.ArrayRecordDataSource(manifest.shard_paths(data_dir))
  decoded = [records.decode_record(source[i]) for i in range(len(source))]
  sources = [{s["path"] for s in r["meta"].get("sources", [])} or {r["id"]} for r in decoded]
  uses = collections.Counter(path for paths in sources for path in paths)
  shared = {path for path, n in uses.items() if n > _SHARED_SOURCE_FRACTION * len(decoded)}
  held_paths = set().union(*(sources[i] - shared for i in range(0, len(decoded), holdout_every)))
  held = [i % holdout_every == 0 or bool(sources[i] & held_paths) for i in range(len(decoded))]
  signals = [_signals(r, i) for i, r in enumerate(decoded)]
  return Split(train=[s for i, group in enumerate(signals) if not held[i] for s in group],
               heldout=[s for i, group in enumerate(signals) if held[i] for s in group])


class SignalSource:
  """Random access to signals as (record bytes, stem names)."""

  def __init__(self, data_dir: str, signals: list[Signal]):
    manifest = records.Manifest.load(data_dir)
    self._records = grain.sources.ArrayRecordDataSource(manifest.shard_paths(data_dir))
    self._signals = signals

  def __len__(self) -> int:
    return len(self._signals)

  def __getitem__(self, index: int) -> tuple[bytes, tuple[str, ...]]:
    signal = self._signals[index]
    return self._records[signal.record], signal.stems


def decode_signal(item: tuple[bytes, tuple[str, ...]], channels: int) -> np.ndarray:
  """(record bytes, stems) → float32 [channels, frames], trimmed after its last audible sample."""
  data, stems = item
  record = records.decode_record(data)
  audio = sum(dsp.to_channels(records.decode_stem(record, name), channels) for name in stems)
  audible = np.flatnonzero(np.max(np.abs(audio), axis=0) > _SILENCE)
  return audio[:, :audible[-1] + 1 if audible.size else 0].astype(np.float32)


def crop(audio: np.ndarray, length: int, start: int) -> np.ndarray:
  """[C, N] → channels-last [length, C] from `start`, zero-padded past the end."""
  piece = audio[:, start:start + length]
  return np.pad(piece, ((0, 0), (0, length - piece.shape[1]))).T.copy()


class RandomCrop:
  """grain `random_map`: a uniformly placed crop of the signal's audible part."""

  def __init__(self, length: int, channels: int):
    self.length, self.channels = length, channels

  def __call__(self, item: tuple[bytes, tuple[str, ...]], rng: np.random.Generator
               ) -> dict[str, np.ndarray]:
    audio = decode_signal(item, self.channels)
    start = int(rng.integers(0, max(audio.shape[1] - self.length, 0) + 1))
    return {"audio": crop(audio, self.length, start)}


def make_crop_iterator(data_dir: str, signals: list[Signal], batch_size: int, length: int,
                       channels: int, *, seed: int = 0, worker_count: int = 0,
                       read_threads: int = 2, prefetch_batches: int = 2
                       ) -> grain.DatasetIterator:
  """Endless per-process batches {"audio": float32 [B, length, channels]} of random crops."""
  import jax  # pylint: disable=g-import-not-at-top  (process layout only)
  count, index = jax.process_count(), jax.process_index()
  if len(signals) < count * batch_size:
    raise ValueError(f"{data_dir}: {len(signals)} training signals cannot fill one batch of "
                     f"{batch_size} on each of {count} processes")
  dataset = grain.MapDataset.source(SignalSource(data_dir, signals))
  dataset = dataset[:(len(dataset) // count) * count].shuffle(seed).repeat()[index::count]
  dataset = dataset.random_map(RandomCrop(length, channels), seed=seed)
  dataset = dataset.batch(batch_size, drop_remainder=True)
  iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                                        prefetch_buffer_size=prefetch_batches))
  if worker_count > 0:
    loader.parse_absl_flags()
    iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=worker_count, per_worker_buffer_size=prefetch_batches))
  return iter(iterable)


def loudest_window(audio: np.ndarray, length: int, hop: int = 1024) -> int:
  """Start (a multiple of `hop`) of the `length`-sample window of [C, N] audio with most energy."""
  if audio.shape[1] <= length:
    return 0
  energy = np.concatenate([[0.0], np.cumsum(np.square(audio, dtype=np.float64).sum(axis=0))])
  starts = np.arange(0, audio.shape[1] - length + 1, hop)
  return int(starts[np.argmax(energy[starts + length] - energy[starts])])


def evaluation_clips(data_dir: str, signals: list[Signal], count: int, length: int,
                     channels: int) -> tuple[np.ndarray, list[str]]:
  """The loudest `length`-sample window of up to `count` held-out signals, spread evenly over
  the held-out list → ([N, length, channels] float32, a "record/stems" name per clip)."""
  if not signals:
    raise ValueError(f"{data_dir}: no held-out signals to evaluate on")
  source = SignalSource(data_dir, signals)
  picks = np.unique(np.linspace(0, len(signals) - 1, min(count, len(signals))).astype(int))
  clips, names = [], []
  for i in picks:
    audio = decode_signal(source[int(i)], channels)
    clips.append(crop(audio, length, loudest_window(audio, length)))
    record = records.decode_record(source[int(i)][0])["id"]
    names.append(f"{record}/{'+'.join(signals[i].stems)}")
  return np.stack(clips), names
