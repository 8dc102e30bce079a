"""Converter: the real 3B key set, the three checkpoint layouts, strictness and dtypes."""

from __future__ import annotations

import json
import os

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from aomni_jax.conversion.common import ConversionError
from aomni_jax.conversion import hf_qwen
from aomni_jax.models.qwen_omni.config import QWEN25_OMNI_3B, load_thinker_config


def _qwen_keys(golden_dir):
  entries = json.loads((golden_dir / "keys" / "keys.json").read_text())
  return {e["key"]: tuple(e["shape"]) for e in entries if e["component"].startswith("qwen_thinker")}


def test_expected_keys_equal_the_audio_omni_checkpoint_keys(golden_dir):
  golden = _qwen_keys(golden_dir)
  expected = hf_qwen.expected_keys(QWEN25_OMNI_3B, hf_qwen.THINKER_PREFIX_IN_AUDIO_OMNI)
  assert set(expected) == set(golden)


def test_real_3b_shapes_pass_the_strict_check_and_count(golden_dir):
  """Shape-only source (zero-stride arrays): the metadata check must accept the real checkpoint."""
  golden = _qwen_keys(golden_dir)
  shapes = hf_qwen.target_shapes(QWEN25_OMNI_3B)
  n_params = sum(int(np.prod(s)) for s in shapes.values())
  assert n_params == sum(int(np.prod(s)) for s in golden.values()) == 4_703_464_448

  class ShapeOnly:
    """Keys and shapes only; reading a tensor is an error."""

    def __init__(self, shapes):
      self.keys, self.shape = shapes.keys, shapes.__getitem__

    def get(self, key):
      raise AssertionError("the strict check must not read tensors")

  prefix = hf_qwen.THINKER_PREFIX_IN_AUDIO_OMNI
  bad = dict(golden, **{prefix + "model.norm.weight": (7,)})
  with pytest.raises(ConversionError, match="mis-shaped: .*model.norm.weight"):
    hf_qwen.convert_thinker(ShapeOnly(bad), QWEN25_OMNI_3B, prefix)
  # The real shapes pass the check; conversion then starts reading (np.empty targets are lazy).
  with pytest.raises(AssertionError, match="must not read"):
    hf_qwen.convert_thinker(ShapeOnly(golden), QWEN25_OMNI_3B, prefix)


def _tensors(directory):
  from safetensors import safe_open
  with safe_open(os.path.join(directory, "model.safetensors"), framework="numpy") as f:
    return {k: f.get_tensor(k) for k in f.keys()}


def _assert_same(a, b):
  assert set(a) == set(b)
  for path in a:
    np.testing.assert_array_equal(np.asarray(a[path], np.float32), np.asarray(b[path], np.float32))


def test_three_layouts_give_the_same_arrays(thinker_a, tmp_path):
  cfg = thinker_a.cfg
  tensors = _tensors(thinker_a.directory)
  reference = hf_qwen.convert_thinker(thinker_a.directory, cfg)
  # Full Qwen2.5-Omni: `thinker.` prefix, two shards with an index, plus talker keys to ignore.
  full = {"thinker." + k: v for k, v in tensors.items()}
  full["talker.codec_head.weight"] = np.zeros((3, 3), np.float32)
  names = sorted(full)
  shards = {"model-00001-of-00002.safetensors": names[::2],
            "model-00002-of-00002.safetensors": names[1::2]}
  for file, keys in shards.items():
    save_file({k: full[k] for k in keys}, str(tmp_path / file))
  (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
      {"weight_map": {k: f for f, keys in shards.items() for k in keys}}))
  source = hf_qwen.open_source(str(tmp_path))
  assert hf_qwen.detect_prefix(source) == "thinker."
  _assert_same(hf_qwen.convert_thinker(source, cfg, "thinker."), reference)
  # Audio-Omni: the thinker nested in the conditioner, next to other components.
  audio_omni = {hf_qwen.THINKER_PREFIX_IN_AUDIO_OMNI + k: v for k, v in tensors.items()}
  audio_omni["model.model.to_timestep_embed.0.weight"] = np.zeros((2, 2), np.float32)
  assert hf_qwen.detect_prefix(hf_qwen.MappingSource(audio_omni)) == (
      hf_qwen.THINKER_PREFIX_IN_AUDIO_OMNI)
  _assert_same(hf_qwen.convert_thinker(audio_omni, cfg, hf_qwen.THINKER_PREFIX_IN_AUDIO_OMNI),
               reference)
  # transformers' in-memory names (model.language_model.*, model.audio_tower.*, model.visual.*).
  _assert_same(hf_qwen.convert_thinker(thinker_a.hf.state_dict(), cfg), reference)


def test_strict_errors_list_every_problem(thinker_a):
  tensors = _tensors(thinker_a.directory)
  del tensors["model.layers.1.mlp.up_proj.weight"]
  tensors["visual.blocks.0.attn.extra.weight"] = np.zeros((2,), np.float32)
  tensors["audio_tower.proj.bias"] = np.zeros((5,), np.float32)
  with pytest.raises(ConversionError) as err:
    hf_qwen.convert_thinker(tensors, thinker_a.cfg)
  message = str(err.value)
  assert "3 problem(s)" in message
  assert "missing: no checkpoint key model.layers.1.mlp.up_proj.weight" in message
  assert "unexpected key (no parameter of ours takes it): visual.blocks.0.attn.extra" in message
  assert "mis-shaped: audio_tower.proj.bias (5,)" in message


def test_bf16_parameters_by_default(thinker_a):
  cfg = load_thinker_config(thinker_a.directory)
  assert cfg.param_dtype == "bfloat16"
  arrays = hf_qwen.convert_thinker(thinker_a.directory, cfg)
  assert {a.dtype for a in arrays.values()} == {np.dtype(ml_dtypes.bfloat16)}
  model = hf_qwen.load_thinker(thinker_a.directory, cfg)
  embed = np.asarray(model.text.embed_tokens[...], np.float32)
  ref = thinker_a.hf.model.language_model.embed_tokens.weight.detach().numpy()
  # bf16 storage is exactly the round-to-nearest of the fp32 weights, nothing looser.
  np.testing.assert_array_equal(embed, ref.astype(ml_dtypes.bfloat16).astype(np.float32))
  assert model.text.embed_tokens[...].dtype == ml_dtypes.bfloat16
