"""Reads a TensorFlow (V2 bundle) checkpoint into numpy without TensorFlow.

A bundle is `PREFIX.index`, a LevelDB-style sorted table mapping each variable name to a
BundleEntryProto (dtype, shape, offset and size in the data file), and `PREFIX.data-00000-of-00001`
holding the raw little-endian tensors. TensorFlow cannot share an environment with our JAX (it pins
an older ml-dtypes), so the musicnn weights are read with this instead.
"""

from __future__ import annotations

import struct

from etils import epath
import numpy as np

_FOOTER_BYTES = 48
_TABLE_MAGIC = 0xdb4775248b80fb57
_BLOCK_TRAILER_BYTES = 5  # compression type + crc32c after every block
# DataType enum values of tensorflow/core/framework/types.proto that checkpoints use.
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_, 19: np.float16}


class CheckpointError(ValueError):
  """The files are not a readable TensorFlow V2 checkpoint."""


def _varint(data: bytes, offset: int) -> tuple[int, int]:
  value, shift = 0, 0
  while True:
    byte = data[offset]
    offset += 1
    value |= (byte & 0x7F) << shift
    if byte < 0x80:
      return value, offset
    shift += 7


def _block_entries(table: bytes, offset: int, size: int):
  """(key, value) pairs of one table block (keys are prefix-compressed against the previous)."""
  block = table[offset:offset + size]
  if table[offset + size] != 0:  # the trailer's first byte: 0 = uncompressed
    raise CheckpointError("compressed checkpoint index blocks are not supported")
  restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
  end = len(block) - 4 - 4 * restarts
  position, key = 0, b""
  while position < end:
    shared, position = _varint(block, position)
    unshared, position = _varint(block, position)
    value_size, position = _varint(block, position)
    key = key[:shared] + block[position:position + unshared]
    position += unshared
    yield key, block[position:position + value_size]
    position += value_size


def _fields(message: bytes) -> list[tuple[int, int | bytes]]:
  """Protobuf wire format → [(field number, varint value or bytes)]."""
  fields, position = [], 0
  while position < len(message):
    tag, position = _varint(message, position)
    number, wire_type = tag >> 3, tag & 7
    if wire_type == 0:
      value, position = _varint(message, position)
    elif wire_type == 2:
      length, position = _varint(message, position)
      value, position = message[position:position + length], position + length
    elif wire_type == 5:
      value, position = message[position:position + 4], position + 4
    elif wire_type == 1:
      value, position = message[position:position + 8], position + 8
    else:
      raise CheckpointError(f"unsupported protobuf wire type {wire_type}")
    fields.append((number, value))
  return fields


def _entry(message: bytes) -> tuple[type, tuple[int, ...], int, int, int]:
  """BundleEntryProto → (numpy dtype, shape, shard, offset, size)."""
  fields = dict.fromkeys((1, 3, 4, 5), 0)
  shape: tuple[int, ...] = ()
  for number, value in _fields(message):
    if number == 2:
      dims = [v for n, v in _fields(value) if n == 2]
      shape = tuple(dict(_fields(d)).get(1, 0) for d in dims)
    elif number in fields:
      fields[number] = value
  if fields[1] not in _DTYPES:
    raise CheckpointError(f"unsupported tensor dtype enum {fields[1]}")
  return _DTYPES[fields[1]], shape, fields[3], fields[4], fields[5]


def read_checkpoint(prefix: str | epath.Path) -> dict[str, np.ndarray]:
  """Every variable of the checkpoint at `prefix` (the path without .index / .data-*)."""
  prefix = str(prefix)
  table = epath.Path(prefix + ".index").read_bytes()
  if struct.unpack_from("<Q", table, len(table) - 8)[0] != _TABLE_MAGIC:
    raise CheckpointError(f"{prefix}.index is not a TensorFlow checkpoint index")
  footer = table[-_FOOTER_BYTES:]
  _, position = _varint(footer, 0)  # metaindex handle: offset
  _, position = _varint(footer, position)  # metaindex handle: size
  index_offset, position = _varint(footer, position)
  index_size, _ = _varint(footer, position)
  shards: dict[int, bytes] = {}
  num_shards = 1
  tensors = {}
  for _, handle in _block_entries(table, index_offset, index_size):
    block_offset, position = _varint(handle, 0)
    block_size, _ = _varint(handle, position)
    for key, value in _block_entries(table, block_offset, block_size):
      if not key:  # the BundleHeaderProto: field 1 is the shard count
        num_shards = dict(_fields(value)).get(1, 1)
        continue
      dtype, shape, shard, offset, size = _entry(value)
      if shard not in shards:
        shards[shard] = epath.Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}").read_bytes()
      tensors[key.decode()] = np.frombuffer(shards[shard], dtype, size // np.dtype(dtype).itemsize,
                                            offset).reshape(shape).copy()
  return tensors
