"""Reader for Qt binary resource bundles (`.rcc`), used to get GCompris' recordings out.

Layout (all integers big-endian): magic "qres", u32 version, then u32 offsets of the node tree,
the data area and the name table (version ≥3 adds a u32 flags word). Tree nodes are 14 bytes
(version 1) or 22 bytes (a u64 modification time appended): u32 name offset, u16 flags, then
either u32 child count + u32 first child index (directory, flag 2) or u16 country, u16 language,
u32 data offset (file). Names are u16 length, u32 hash, UTF-16BE text. A data entry is a u32 size
and the payload; flag 1 means qCompress (u32 original size + zlib stream), flag 4 zstd.
"""

from __future__ import annotations

import os
import struct
import zlib

_DIRECTORY = 0x2
_ZLIB = 0x1
_ZSTD = 0x4


class RccBundle:
  """Random access to the files of one `.rcc` bundle, by their path inside it."""

  def __init__(self, path: str):
    with open(path, "rb") as handle:
      self._blob = handle.read()
    if self._blob[:4] != b"qres":
      raise ValueError(f"{path} is not a Qt resource bundle (no 'qres' magic)")
    version, self._tree, self._data, self._names = struct.unpack(">IIII", self._blob[4:20])
    self._node_size = 14 if version == 1 else 22
    self._offsets = dict(self._walk(0, ""))

  def names(self) -> list[str]:
    return sorted(self._offsets)

  def read(self, name: str) -> bytes:
    flags, offset = self._offsets[name]
    size, = struct.unpack(">I", self._blob[self._data + offset:self._data + offset + 4])
    payload = self._blob[self._data + offset + 4:self._data + offset + 4 + size]
    if flags & _ZLIB:
      return zlib.decompress(payload[4:])
    if flags & _ZSTD:
      raise ValueError(f"{name}: zstd-compressed resources are not supported")
    return payload

  def extract(self, name: str, out_dir: str) -> str:
    target = os.path.join(out_dir, name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as handle:
      handle.write(self.read(name))
    return target

  def _name(self, offset: int) -> str:
    start = self._names + offset
    length, = struct.unpack(">H", self._blob[start:start + 2])
    return self._blob[start + 6:start + 6 + 2 * length].decode("utf-16-be")

  def _walk(self, index: int, prefix: str):
    """Yields (path, (flags, data offset)) for every file below node `index`."""
    node = self._tree + index * self._node_size
    name_offset, flags = struct.unpack(">IH", self._blob[node:node + 6])
    path = f"{prefix}{self._name(name_offset)}" if index else ""
    if flags & _DIRECTORY:
      count, first = struct.unpack(">II", self._blob[node + 6:node + 14])
      for child in range(first, first + count):
        yield from self._walk(child, f"{path}/" if path else "")
    else:
      data_offset, = struct.unpack(">I", self._blob[node + 10:node + 14])
      yield path, (flags, data_offset)
