"""The packaged F5 vocabulary and the embedding-id layout."""

import importlib.resources

import numpy as np

from aomni_jax.text.vocab import load_vocab, pad_ids


def test_packaged_vocab_is_the_golden_file_byte_for_byte(golden_dir):
  packaged = (importlib.resources.files("aomni_jax") / "assets" / "f5_vocab.txt").read_bytes()
  assert packaged == (golden_dir / "transcript" / "vocab.txt").read_bytes()
  assert b"\r\n" in packaged


def test_vocab_entries():
  vocab = load_vocab()
  assert len(vocab) == 2545
  assert vocab[" "] == 0
  assert not any(k.endswith("\r") for k in vocab)
  assert vocab["ni3"] > 0


def test_pad_ids_shifts_truncates_and_pads():
  out = pad_ids([[0, 5, 7], None, list(range(10))], seq_len=4)
  np.testing.assert_array_equal(out, [[1, 6, 8, 0], [0, 0, 0, 0], [1, 2, 3, 4]])
  assert out.dtype == np.int32
