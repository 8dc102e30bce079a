"""`synchformer_state_dict.pth` (MMAudio's Synchformer) → our `models.synchformer.Synchformer`.

The file is the whole audio-visual sync model's state dict; as MMAudio's own loader does, only the
`vfeat_extractor.` entries are used (an audio branch, if present, is dropped). Inside that prefix
the conversion is strict. The one exception is the 2-D `patch_embed.proj` that MotionFormer builds
but never runs (only the 3-D tubelet embedding is used): it must be present with the shapes of a
patch embedding, as MMAudio's strict load requires, and is then dropped.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from aomni_jax.conversion.common import (ConversionError, Path, Rule, convert, dense_rules,
                                         identity, linear)

PREFIX = "vfeat_extractor."
UNUSED_PATCH_EMBED = ("patch_embed.proj.weight", "patch_embed.proj.bias")


def _conv3d(w: np.ndarray) -> np.ndarray:
  """nn.Conv3d [D, C, kt, p, p] → our tubelet kernel [kt, p, p, C, D]."""
  if w.ndim != 5:
    raise ConversionError(f"expected a [D, C, kt, p, p] Conv3d weight, got {w.shape}")
  return np.ascontiguousarray(w.transpose(2, 3, 4, 1, 0))


def _squeeze_batch(w: np.ndarray) -> np.ndarray:
  """[1, L, D] or [1, 1, D] learned table → [L, D] or [D]."""
  if w.ndim != 3 or w.shape[0] != 1:
    raise ConversionError(f"expected a [1, L, D] table, got {w.shape}")
  return w[0, 0] if w.shape[1] == 1 else w[0]


def synchformer_rules() -> list[Rule]:
  """Keys relative to `vfeat_extractor.` → paths of `Synchformer`."""
  block = "blocks.{i}."
  rules = [Rule("cls_token", "cls_token", _squeeze_batch),
           Rule("pos_embed", "pos_embed", _squeeze_batch),
           Rule("temp_embed", "temp_embed", _squeeze_batch),
           Rule("patch_embed_3d.proj.weight", "patch_kernel", _conv3d),
           Rule("patch_embed_3d.proj.bias", "patch_bias", identity),
           Rule("norm.weight", "norm/scale", identity),
           Rule("norm.bias", "norm/bias", identity),
           Rule("spatial_attn_agg.cls_token", "spatial_agg/cls_token", _squeeze_batch),
           Rule("spatial_attn_agg.self_attn.in_proj_weight", "spatial_agg/in_proj/kernel", linear),
           Rule("spatial_attn_agg.self_attn.in_proj_bias", "spatial_agg/in_proj/bias", identity)]
  for norm in ("norm1", "norm2", "norm3"):
    rules += [Rule(f"{block}{norm}.weight", f"blocks/{{i}}/{norm}/scale", identity),
              Rule(f"{block}{norm}.bias", f"blocks/{{i}}/{norm}/bias", identity)]
  for attn in ("attn", "timeattn"):
    rules += dense_rules(f"{block}{attn}.qkv", f"blocks/{{i}}/{attn}/qkv")
    rules += dense_rules(f"{block}{attn}.proj", f"blocks/{{i}}/{attn}/proj")
  rules += dense_rules(block + "mlp.fc1", "blocks/{i}/mlp/fc1") + dense_rules(block + "mlp.fc2",
                                                                     "blocks/{i}/mlp/fc2")
  agg = "spatial_attn_agg."
  rules += dense_rules(agg + "self_attn.out_proj", "spatial_agg/out_proj")
  rules += dense_rules(agg + "linear1", "spatial_agg/mlp/fc1") + dense_rules(agg + "linear2",
                                                                    "spatial_agg/mlp/fc2")
  for norm in ("norm1", "norm2"):
    rules += [Rule(f"{agg}{norm}.weight", f"spatial_agg/{norm}/scale", identity),
              Rule(f"{agg}{norm}.bias", f"spatial_agg/{norm}/bias", identity)]
  return rules


def _check_unused_patch_embed(visual: Mapping[str, np.ndarray], dim: int) -> list[str]:
  weight, bias = (visual.get(PREFIX + k) for k in UNUSED_PATCH_EMBED)
  problems = [f"missing: {PREFIX}{k} (unused by the forward pass, but part of the model)"
              for k, v in zip(UNUSED_PATCH_EMBED, (weight, bias)) if v is None]
  if weight is not None and (weight.ndim != 4 or weight.shape[:2] != (dim, 3)):
    problems.append(f"mis-shaped: {PREFIX}{UNUSED_PATCH_EMBED[0]} is {weight.shape}, "
                    f"expected [{dim}, 3, p, p]")
  return problems


def convert_synchformer(state: Mapping[str, np.ndarray],
                        target_shapes: Mapping[Path, tuple[int, ...]]) -> dict[Path, np.ndarray]:
  """The visual branch of a Synchformer state dict → our parameters (strict; see module doc)."""
  visual = {k: v for k, v in state.items() if k.startswith(PREFIX)}
  if not visual:
    raise ConversionError(f"no {PREFIX!r} keys: this is not a Synchformer state dict "
                          f"(first keys: {sorted(state)[:3]})")
  dim = int(target_shapes[("patch_bias",)][0])
  problems = _check_unused_patch_embed(visual, dim)
  used = {k: v for k, v in visual.items() if k[len(PREFIX):] not in UNUSED_PATCH_EMBED}
  try:
    out = convert(used, synchformer_rules(), target_shapes, prefix=PREFIX,
                  what="synchformer state dict")
  except ConversionError as e:
    raise ConversionError("\n  ".join([str(e)] + problems)) from None
  if problems:
    raise ConversionError(f"synchformer state dict: {len(problems)} problem(s)\n  "
                          + "\n  ".join(problems))
  return out

