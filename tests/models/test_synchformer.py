"""Synchformer: golden parity, the strict converter, bf16 against fp32 and the real size."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

from aomni_jax.config import SynchformerConfig
from aomni_jax.conversion.common import ConversionError, build_loaded, flat_shapes
from aomni_jax.conversion.synchformer import convert_synchformer
from aomni_jax.models.synchformer import (Synchformer, encode_video, official_flops,
                                          video_segments)
from aomni_jax.parity import load_fixture
from aomni_jax.parity import synchformer as synchformer_parity


def test_golden_synchformer_fixture(golden_dir):
  results = synchformer_parity.run(golden_dir / "synchformer")
  names = {r.name for r in results}
  assert {"output", "seg_block1_out", "seg_spatial_agg_out"} <= names
  failed = [r.line() for r in results if not r.passed]
  assert not failed, failed


@pytest.fixture(scope="module")
def fixture(golden_dir):
  manifest, arrays = load_fixture(golden_dir / "synchformer")
  return (synchformer_parity.config_from_manifest(manifest),
          load_file(golden_dir / "synchformer" / "weights.safetensors"), arrays)


def _shapes(cfg):
  return flat_shapes(nnx.eval_shape(lambda: Synchformer(cfg, rngs=nnx.Rngs(0))))


def test_converter_reports_every_problem_at_once(fixture):
  cfg, state, _ = fixture
  broken = dict(state)
  del broken["vfeat_extractor.blocks.1.mlp.fc2.bias"]
  del broken["vfeat_extractor.patch_embed.proj.bias"]
  broken["vfeat_extractor.blocks.0.extra.weight"] = np.zeros(3, np.float32)
  broken["vfeat_extractor.temp_embed"] = np.zeros((1, 9, cfg.embed_dim), np.float32)
  with pytest.raises(ConversionError) as info:
    convert_synchformer(broken, _shapes(cfg))
  message = str(info.value)
  for needle in ("blocks/1/mlp/fc2/bias", "patch_embed.proj.bias", "blocks.0.extra.weight",
                 "temp_embed"):
    assert needle in message


def test_converter_keeps_only_the_visual_branch(fixture):
  cfg, state, _ = fixture
  with_audio = dict(state, **{"afeat_extractor.blocks.0.weight": np.ones(4, np.float32)})
  out = convert_synchformer(with_audio, _shapes(cfg))
  assert set(out) == set(_shapes(cfg))
  with pytest.raises(ConversionError, match="not a Synchformer"):
    convert_synchformer({"model.x": np.ones(1)}, _shapes(cfg))


_encode = nnx.jit(encode_video)


def _loaded(cfg, state):
  make = lambda: Synchformer(cfg, rngs=nnx.Rngs(0))  # noqa: E731
  return build_loaded(make, convert_synchformer(state, _shapes(cfg)))


def test_uint8_frames_in_fp32_and_bf16(fixture):
  """The fixture's frames are (u8/255 − 0.5)/0.5, so their uint8 form must give its output."""
  cfg, state, arrays = fixture
  frames = np.moveaxis(arrays["frames"], 2, -1)
  as_uint8 = np.round((frames + 1.0) * 127.5).astype(np.uint8)
  np.testing.assert_allclose(as_uint8 / 127.5 - 1.0, frames, atol=1e-6)
  with jax.default_matmul_precision("highest"):
    reference = np.asarray(_encode(_loaded(cfg, state), jnp.asarray(as_uint8)))
  np.testing.assert_allclose(reference, arrays["output"], atol=1e-4, rtol=1e-4)
  bf16 = np.asarray(_encode(_loaded(dataclasses.replace(cfg, dtype="bfloat16"), state),
                            jnp.asarray(as_uint8)))
  assert bf16.dtype == np.float32
  rel = np.abs(bf16 - reference).max() / np.abs(reference).max()
  assert 0 < rel < 3e-2, rel


def test_segments_are_16_frame_windows_with_stride_8():
  cfg = SynchformerConfig()
  frames = jnp.arange(250)[None, :, None, None, None] * jnp.ones((2, 1, 1, 1, 1))
  segments = video_segments(frames, cfg)
  assert segments.shape == (60, 16, 1, 1, 1)
  assert cfg.num_segments(250) * cfg.time_tokens == 240
  np.testing.assert_array_equal(segments[29, :, 0, 0, 0], np.arange(232, 248))
  np.testing.assert_array_equal(segments[30, :, 0, 0, 0], np.arange(16))
  with pytest.raises(ValueError, match="fewer than one"):
    video_segments(frames[:, :15], cfg)


def test_real_size_parameter_count():
  # official_spec §3.4: 122,440,704 parameters, less the unused 2-D patch embedding (768·3·16·16 + 768).
  count = sum(math.prod(s) for s in _shapes(SynchformerConfig()).values())
  assert count == 122_440_704 - (768 * 3 * 16 * 16 + 768)


def test_flops_match_the_official_count():
  cfg = SynchformerConfig()
  per_segment = official_flops(cfg, 16)
  d, rows = 768, 8 * 197
  aggregation = 2 * rows * d * 4 * d + 4 * 8 * 197 ** 2 * d + 4 * rows * d * 4 * d
  # official_spec §3.4 counts 0.371 TFLOP per segment without the fused aggregation layer.
  assert abs((per_segment - aggregation) / 0.371e12 - 1) < 2e-3
  assert official_flops(cfg, 250) == 30 * per_segment
