"""`synchformer` fixtures: MMAudio's `encode_video_with_sync` (MotionFormer + spatial aggregation).

The config comes from the manifest (`tiny_config`, or `config` for fixtures at other sizes); the
weights go through the real converter. Besides the output, every per-segment intermediate the
fixture holds is compared, so a failure points at the layer that differs.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from aomni_jax.config import SynchformerConfig
from aomni_jax.conversion.common import build_loaded, flat_shapes
from aomni_jax.conversion.synchformer import convert_synchformer
from aomni_jax.models.synchformer import Synchformer, encode_video, video_segments
from aomni_jax.parity import CaseResult, compare, load_fixture, weights_path

ATOL = 1e-4  # manifest: atol = rtol = 1e-4 in float32 (f32 vs f64 was 1.6e-6)


def config_from_manifest(manifest: dict) -> SynchformerConfig:
  c = manifest.get("config") or manifest["tiny_config"]
  return SynchformerConfig(
      embed_dim=int(c["embed_dim"]), depth=int(c["depth"]), num_heads=int(c["num_heads"]),
      mlp_ratio=int(c["mlp_ratio"]), patch_size=int(c["patch_size"]),
      image_size=int(c["img_size"]),
      tubelet_frames=int(c.get("temporal_patch (PATCH_SIZE_TEMP)", c.get("temporal_patch", 2))))


def _intermediates(model: Synchformer, segments: jax.Array) -> dict[str, jax.Array]:
  """The per-segment arrays a fixture may hold, by their fixture names."""
  frames = segments.shape[1] // model.cfg.tubelet_frames
  out = {"seg_patch_embed_3d_out": model.patch_embed(segments).reshape(segments.shape[0], -1,
                                                                         model.cfg.embed_dim)}
  x = out["seg_tokens_with_cls_and_pos"] = model.embed(segments)
  for i, block in enumerate(model.blocks):
    if i == 0:
      time_out = out["seg_block0_timeattn_out"] = block.timeattn(block.norm3(x), over="time",
                                                                 frames=frames)
      space_out = out["seg_block0_spaceattn_out"] = block.attn(block.norm1(x + time_out),
                                                               over="space", frames=frames)
      out["seg_block0_mlp_out"] = block.mlp(block.norm2(x + time_out + space_out))
    x = out[f"seg_block{i}_out"] = block(x, frames)
  out["seg_final_norm_out"] = model.norm(x[:, 1:])
  out["seg_spatial_agg_out"] = model.aggregate(x, frames)
  return out


def run(fixture_dir: pathlib.Path) -> list[CaseResult]:
  fixture_dir = pathlib.Path(fixture_dir)
  manifest, arrays = load_fixture(fixture_dir)
  cfg = config_from_manifest(manifest)
  make = lambda: Synchformer(cfg, rngs=nnx.Rngs(0))  # noqa: E731
  state = load_file(weights_path(fixture_dir, manifest))
  model = build_loaded(make, convert_synchformer(state, flat_shapes(nnx.eval_shape(make))))
  frames = jnp.asarray(np.moveaxis(arrays["frames"], 2, -1))  # [B, T, 3, H, W] → channels last
  results = []
  with jax.default_matmul_precision("highest"):
    if "segment_start_frames" in arrays:
      starts = np.arange(cfg.num_segments(frames.shape[1])) * cfg.segment_stride
      results.append(compare("segment_start_frames", starts, arrays["segment_start_frames"],
                             atol=0))
    results.append(compare("output", nnx.jit(encode_video)(model, frames), arrays["output"],
                           atol=ATOL, rtol=ATOL))
    ours = nnx.jit(_intermediates)(model, video_segments(frames, cfg))
    results += [compare(name, ours[name], arrays[name], atol=ATOL, rtol=ATOL)
                for name in ours if name in arrays]
  return results
