"""Transcript front end against the golden char lists, and its defined behaviour on odd input."""

import json

import pytest

from aomni_jax.text.frontend import text_to_symbols, texts_to_symbols
from aomni_jax.text.vocab import symbols_to_ids, unknown_symbols


def _golden_texts(golden_dir):
  manifest = json.loads((golden_dir / "transcript" / "manifest.json").read_text("utf-8"))
  for batch in manifest["texts"].values():
    for text, chars, ids in zip(batch["texts"], batch["char_lists_after_convert_char_to_pinyin"],
                                batch["token_ids_unpadded"]):
      if text is not None:
        yield text, chars, ids


def test_golden_symbols_and_ids(golden_dir):
  cases = list(_golden_texts(golden_dir))
  assert len(cases) == 5
  for text, chars, ids in cases:
    symbols = text_to_symbols(text)
    assert symbols == chars, text
    assert symbols_to_ids(symbols) == ids, text


def test_translation_and_spacing_rules():
  # `;` → `,`, curly quotes → straight; a multi-char ASCII word after a symbol gets a space,
  # but not after a quote or a colon.
  assert text_to_symbols("a;b") == ["a", ",", "b"]
  assert text_to_symbols("“hi”") == ['"', "h", "i", '"']
  assert text_to_symbols("x:ab") == ["x", ":", "a", "b"]
  assert text_to_symbols("1-23") == ["1", "-", " ", "2", "3"]


def test_chinese_gets_tone3_pinyin_with_sandhi():
  # 你好: third-tone sandhi turns ni3 into ni2.
  assert text_to_symbols("你好") == [" ", "ni2", " ", "hao3"]


def test_unknown_characters_map_to_space_id():
  symbols = text_to_symbols("ok🎵")
  assert symbols[-1] == "🎵"
  assert unknown_symbols(symbols) == ["🎵"]
  assert symbols_to_ids(symbols)[-1] == 0


def test_merged_non_chinese_run_falls_back_to_characters():
  # The official code raises IndexError here (pypinyin returns one item for "……").
  assert text_to_symbols("好……") == [" ", "hao3", "…", "…"]


def test_none_and_non_strings():
  assert texts_to_symbols([None, "a"]) == [None, ["a"]]
  with pytest.raises(TypeError, match="transcript must be a str"):
    text_to_symbols(b"bytes")
  assert text_to_symbols("") == []
