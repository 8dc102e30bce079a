"""Transcript front end: text → F5-style symbols (characters and TONE3 pinyin), official_spec §3.2.

Rules (they decide which symbols, and hence which ids, the transcript encoder sees):
  1. `;` → `,` and curly quotes → straight quotes.
  2. jieba segmentation.
  3. A segment whose UTF-8 length equals its character count (pure ASCII) is split into
     characters; a " " goes before it when something precedes it, it is longer than one
     character and the previous symbol is not one of ` :'"`.
  4. A segment of only 3-byte characters is romanised as a whole with pypinyin (TONE3, tone
     sandhi), and each character of the CJK range U+3100..U+9FFF gets a " " before its syllable.
  5. Anything else goes character by character: Latin-1 as-is, CJK as " " + its pinyin, the rest
     as-is.
Symbols outside the vocabulary map to id 0 (" ") later, in `vocab.symbols_to_ids`.

One deliberate difference: for a 3-byte segment whose non-Chinese characters pypinyin merges into
one item (e.g. "……"), the official code raises IndexError; we fall back to rule 5 for it.
"""

from __future__ import annotations

import functools
import logging
from typing import Sequence

import jieba
from pypinyin import Style, lazy_pinyin

_TRANSLATION = str.maketrans({";": ",", "“": '"', "”": '"', "‘": "'", "’": "'"})
_NO_SPACE_AFTER = " :'\""


@functools.cache
def _segmenter() -> jieba.Tokenizer:
  jieba.setLogLevel(logging.CRITICAL)
  jieba.initialize()
  return jieba.dt


def _is_cjk(char: str) -> bool:
  return "\u3100" <= char <= "\u9fff"


def _pinyin(text: str) -> list[str]:
  return lazy_pinyin(text, style=Style.TONE3, tone_sandhi=True)


def _char_by_char(segment: str, out: list[str]) -> None:
  for char in segment:
    if ord(char) < 256:
      out.append(char)
    elif _is_cjk(char):
      out.append(" ")
      out.extend(_pinyin(char))
    else:
      out.append(char)


def text_to_symbols(text: str) -> list[str]:
  """One transcript → its symbol list (see the module docstring for the rules)."""
  if not isinstance(text, str):
    raise TypeError(f"transcript must be a str, got {type(text).__name__}")
  symbols: list[str] = []
  for segment in _segmenter().cut(text.translate(_TRANSLATION)):
    n_bytes = len(segment.encode("utf-8"))
    if n_bytes == len(segment):
      if symbols and n_bytes > 1 and symbols[-1] not in _NO_SPACE_AFTER:
        symbols.append(" ")
      symbols.extend(segment)
    elif n_bytes == 3 * len(segment) and len(syllables := _pinyin(segment)) == len(segment):
      for char, syllable in zip(segment, syllables):
        if _is_cjk(char):
          symbols.append(" ")
        symbols.append(syllable)
    else:
      _char_by_char(segment, symbols)
  return symbols


def texts_to_symbols(texts: Sequence[str | None]) -> list[list[str] | None]:
  """A batch of transcripts; None (no transcript) stays None."""
  return [None if t is None else text_to_symbols(t) for t in texts]
