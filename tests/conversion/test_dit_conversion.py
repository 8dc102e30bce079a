"""The DiT converter is strict and covers every official DiT key."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from aomni_jax.config import DiTConfig
from aomni_jax.conversion.common import ConversionError
from aomni_jax.conversion.dit import convert_dit, expected_official_keys
from aomni_jax.parity.dit import dit_config_from_manifest


@pytest.fixture(scope="module")
def fixture(golden_dir):
  manifest = json.loads((golden_dir / "dit" / "manifest.json").read_text())
  return load_file(str(golden_dir / "dit" / "weights.safetensors")), dit_config_from_manifest(
      manifest)


def test_real_checkpoint_dit_keys_are_exactly_the_converter_keys(golden_dir):
  entries = json.loads((golden_dir / "keys" / "keys.json").read_text())
  entries = entries["keys"] if isinstance(entries, dict) else entries
  official = {e["key"] for e in entries if e["key"].startswith("model.model.")}
  assert official == expected_official_keys(DiTConfig())


def test_missing_extra_and_misshaped_keys_are_all_reported(fixture):
  weights, cfg = fixture
  broken = dict(weights)
  del broken["model.model.transformer.layers.1.cross_attn.to_kv.weight"]
  broken["model.model.transformer.layers.0.ff.ff.2.bias"] = np.zeros(7, np.float32)
  broken["model.model.some_new_head.weight"] = np.zeros(3, np.float32)
  with pytest.raises(ConversionError) as err:
    convert_dit(broken, cfg)
  message = str(err.value)
  assert "model.model.some_new_head.weight" in message
  assert "blocks/cross_attn/kv/kernel" in message  # layer 1 missing → cannot stack
  assert "mis-shaped" in message or "ff.ff.2.bias" in message


def test_wrong_inv_freq_is_detected(fixture):
  weights, cfg = fixture
  broken = dict(weights)
  broken["model.model.transformer.rotary_pos_emb.inv_freq"] = weights[
      "model.model.transformer.rotary_pos_emb.inv_freq"] * 2
  with pytest.raises(ConversionError, match="inv_freq"):
    convert_dit(broken, cfg)


def test_conversion_layouts(fixture):
  weights, cfg = fixture
  arrays = convert_dit(weights, cfg)
  qkv = weights["model.model.transformer.layers.1.self_attn.to_qkv.weight"]
  d = qkv.shape[1]  # [3d, d] → [d, 3, d]: part p, column c is row p·d + c of the torch weight
  np.testing.assert_array_equal(arrays[("blocks", "self_attn", "qkv", "kernel")][1],
                                qkv.T.reshape(d, 3, d))
  bias = weights["model.model.transformer.layers.0.ff.ff.0.proj.bias"]
  np.testing.assert_array_equal(arrays[("blocks", "ff", "proj_in", "bias")][0],
                                bias.reshape(2, -1))
  conv = weights["model.model.preprocess_conv.weight"]
  np.testing.assert_array_equal(arrays[("preprocess", "kernel")], conv[:, :, 0].T)
