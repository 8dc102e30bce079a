"""The F5-TTS character/pinyin vocabulary used by the transcript encoder (official_spec §3.2).

The file is shipped byte-for-byte (CRLF line endings) as package data. It is read the way the
official code reads it: text mode, so universal newlines turn `\r\n` into `\n`, and entry i is
line i without its final character. Unknown symbols map to id 0, which is the id of " ".
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Iterable, Mapping, Sequence

import numpy as np

UNKNOWN_ID = 0


@functools.cache
def load_vocab() -> Mapping[str, int]:
  """Symbol → id for the packaged `f5_vocab.txt` (2545 entries)."""
  resource = importlib.resources.files("aomni_jax") / "assets" / "f5_vocab.txt"
  with resource.open("r", encoding="utf-8") as f:
    vocab = {line[:-1]: i for i, line in enumerate(f)}
  if vocab.get(" ") != UNKNOWN_ID:
    raise ValueError("f5_vocab.txt must have ' ' at index 0 (unknown symbols map to it)")
  return vocab


def symbols_to_ids(symbols: Iterable[str], vocab: Mapping[str, int] | None = None) -> list[int]:
  """Looks every symbol up; unknown symbols become 0 (" "), as in the official code."""
  vocab = load_vocab() if vocab is None else vocab
  return [vocab.get(s, UNKNOWN_ID) for s in symbols]


def unknown_symbols(symbols: Iterable[str], vocab: Mapping[str, int] | None = None) -> list[str]:
  """The symbols that `symbols_to_ids` silently maps to 0, for callers that want to warn."""
  vocab = load_vocab() if vocab is None else vocab
  return [s for s in symbols if s not in vocab]


def pad_ids(id_lists: Sequence[Sequence[int] | None], seq_len: int) -> np.ndarray:
  """The embedding input: ids + 1 (0 is the filler), truncated and right-padded to `seq_len`.

  A None entry (no transcript) becomes an all-filler row; the encoder replaces its output with
  the learned empty feature anyway.
  """
  out = np.zeros((len(id_lists), seq_len), np.int32)
  for row, ids in enumerate(id_lists):
    if ids:
      kept = np.asarray(ids[:seq_len], np.int64) + 1
      out[row, :len(kept)] = kept
  return out
