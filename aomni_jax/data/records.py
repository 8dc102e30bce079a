"""The on-disk dataset: versioned msgpack records in ArrayRecord shards, plus a JSON manifest.

Record schema, version 1 (a msgpack map; see `aomni_jax/data/README.md`):
  schema      int, 1
  id          str, unique within the dataset
  rate        int, sample rate of every stem (44100)
  frames      int, samples per stem
  stems       {name: {"codec": "flac16"|"flac24"|"wav_f32", "data": bytes}}
  examples    [{"task", "instruction", "input": [stem names], "target": [stem names],
                "transcript", "label"}]; input/target audio is the *sum* of the named stems
  meta        {...} provenance: sources, licences, drawn synthesis parameters
  features    {name: {"dtype", "shape", "data": bytes}}, per example axis first (precompute)

Each shard `NAME.array_record` has a sidecar `NAME.counts.npy` (examples per record), so the
loader can index examples without reading records. The directory may be a URI (`gs://b/data`,
see `storage`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os

import msgpack
import numpy as np
from array_record.python import array_record_module
from etils import epath

from aomni_jax.audio import io as audio_io
from aomni_jax.data import storage

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def shard_name(index: int, count: int) -> str:
  return f"shard-{index:05d}-of-{count:05d}.array_record"


def pack_array(array: np.ndarray) -> dict:
  array = np.ascontiguousarray(array)
  return {"dtype": array.dtype.str, "shape": list(array.shape), "data": array.tobytes()}


def unpack_array(packed: dict) -> np.ndarray:
  return np.frombuffer(packed["data"], np.dtype(packed["dtype"])).reshape(packed["shape"])


def encode_record(item_id: str, stems: dict[str, np.ndarray], examples: list[dict], meta: dict,
                  rate: int, codec: str, features: dict[str, np.ndarray] | None = None) -> bytes:
  """Serialises one item (stems are [channels, frames] float arrays) to record bytes."""
  frames = {stem.shape[-1] for stem in stems.values()}
  if len(frames) > 1:
    raise ValueError(f"{item_id}: stems differ in length {sorted(frames)}")
  record = {
      "schema": SCHEMA_VERSION, "id": item_id, "rate": rate,
      "frames": frames.pop() if frames else 0,
      "stems": {name: {"codec": codec, "data": audio_io.encode_audio(stem, rate, codec)}
                for name, stem in stems.items()},
      "examples": examples, "meta": meta,
      "features": {name: pack_array(value) for name, value in (features or {}).items()},
  }
  return msgpack.packb(record, use_bin_type=True)


def decode_record(data: bytes) -> dict:
  """Parses record bytes; stems stay encoded until `decode_stems` (most reads need only some)."""
  record = msgpack.unpackb(data, raw=False)
  if record.get("schema") != SCHEMA_VERSION:
    raise ValueError(f"record schema {record.get('schema')} is not the supported {SCHEMA_VERSION}")
  return record


def decode_stem(record: dict, name: str) -> np.ndarray:
  audio, _ = audio_io.decode_audio(record["stems"][name]["data"])
  return audio


def with_features(data: bytes, features: dict[str, np.ndarray], drop_stems: bool) -> bytes:
  """Adds feature arrays to an encoded record (optionally dropping its audio to save space)."""
  record = decode_record(data)
  record["features"].update({name: pack_array(value) for name, value in features.items()})
  if drop_stems:
    record["stems"] = {}
  return msgpack.packb(record, use_bin_type=True)


class ShardWriter:
  """Writes one shard and its example-count sidecar; one writer per worker process.

  Both are written through `storage.local_file` and appear only when the writer closes without
  an error, the sidecar last (its presence marks a finished shard), so a killed or failed job
  never leaves a shard that looks complete. `path` may be a URI.
  """

  def __init__(self, path: str):
    self.path = path
    with contextlib.ExitStack() as files:  # unwound only if the writer cannot be opened
      self._staged_counts = files.enter_context(storage.local_file(counts_path(path)))
      staged = files.enter_context(storage.local_file(path))  # exits, i.e. lands, first
      self._writer = array_record_module.ArrayRecordWriter(staged, "group_size:1")
      self._files = files.pop_all()
    self._counts: list[int] = []

  def write(self, data: bytes, num_examples: int) -> None:
    self._writer.write(data)
    self._counts.append(num_examples)

  def close(self) -> None:
    self.__exit__(None, None, None)

  def __enter__(self) -> ShardWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    """Publishes the shard, or drops it when the block raised."""
    self._writer.close()
    if exc_info[0] is None:
      np.save(self._staged_counts, np.asarray(self._counts, np.int32))
    self._files.__exit__(*exc_info)


def counts_path(shard_path: str) -> str:
  return shard_path.removesuffix(".array_record") + ".counts.npy"


def read_counts(shard_path: str) -> np.ndarray:
  """The examples per record of a shard (local or URI), from its sidecar."""
  return np.load(io.BytesIO(epath.Path(counts_path(shard_path)).read_bytes()))


@dataclasses.dataclass
class Manifest:
  """What a dataset directory holds; written last, so its presence marks a finished build."""
  shards: list[str]
  records: int
  examples: int
  per_task: dict[str, int]
  per_label: dict[str, int]
  target_seconds: float
  licences: dict[str, int]
  dropped: dict[str, int]
  config: dict
  features: list[str] = dataclasses.field(default_factory=list)
  schema_version: int = SCHEMA_VERSION

  def save(self, directory: str) -> None:
    (epath.Path(directory) / MANIFEST).write_text(
        json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True))

  @classmethod
  def load(cls, directory: str) -> Manifest:
    path = epath.Path(directory) / MANIFEST
    if not path.exists():
      raise FileNotFoundError(f"{directory} has no {MANIFEST}: not a finished dataset build")
    manifest = cls(**json.loads(path.read_text()))
    if manifest.schema_version != SCHEMA_VERSION:
      raise ValueError(f"{path}: schema {manifest.schema_version}, expected {SCHEMA_VERSION}")
    return manifest

  def shard_paths(self, directory: str) -> list[str]:
    """Paths as strings for array_record, which reads URIs itself (so they stay URIs)."""
    return [storage.join(directory, shard) for shard in self.shards]
