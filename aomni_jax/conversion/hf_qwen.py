"""Qwen2.5-Omni thinker weights (HF layout) → our `Thinker` parameters, streamed.

Three layouts are read: a `save_pretrained` thinker directory (`audio_tower.*`, `visual.*`,
`model.*`, `lm_head.weight`), a full Qwen2.5-Omni checkpoint (`thinker.` prefix, usually sharded
with an index) and the thinker inside Audio-Omni's checkpoint
(`THINKER_PREFIX_IN_AUDIO_OMNI`). transformers' in-memory names (`model.language_model.*`,
`model.audio_tower.*`, `model.visual.*`) are accepted as well.

Checking is strict and happens on metadata first (key set and every shape, no tensor read), and
the problems are reported together in one `ConversionError`. Then tensors are read one at a time
and written, transformed, straight into preallocated target arrays (a layer slot of a stacked
parameter at a time), so host memory holds one copy of the weights plus one tensor.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterable, Mapping, Protocol

import ml_dtypes
import numpy as np
from flax import nnx

from aomni_jax.conversion.common import ConversionError, Path, Rule, flat_shapes, torch_to_numpy
from aomni_jax.models.qwen_omni.config import ThinkerConfig
from aomni_jax.models.qwen_omni.thinker import Thinker

THINKER_PREFIX_IN_AUDIO_OMNI = "conditioner.conditioners.omni_prompt.model.thinker."
THINKER_PREFIX_IN_QWEN_OMNI = "thinker."

# transformers ≥ 5 in-memory names → on-disk names.
_IN_MEMORY_RENAMES = (("model.language_model.", "model."), ("model.audio_tower.", "audio_tower."),
                      ("model.visual.", "visual."))


# Views only (no copies): the write into the target slot is the single copy.
def _same(w: np.ndarray) -> np.ndarray:
  return w


def _linear(w: np.ndarray) -> np.ndarray:
  return w.T


def _conv1d(w: np.ndarray) -> np.ndarray:
  return w.transpose(2, 1, 0)


def _patch_embed(w: np.ndarray) -> np.ndarray:
  """Conv3d with kernel == stride [out, C, T, p, p] as a matmul kernel [C·T·p·p, out]."""
  return w.reshape(w.shape[0], -1).T


def thinker_rules(cfg: ThinkerConfig) -> list[Rule]:
  """On-disk key (relative to the thinker) → our parameter path, with its layout transform."""
  rules = [
      Rule("audio_tower.conv1.weight", "audio/conv1_kernel", _conv1d),
      Rule("audio_tower.conv1.bias", "audio/conv1_bias"),
      Rule("audio_tower.conv2.weight", "audio/conv2_kernel", _conv1d),
      Rule("audio_tower.conv2.bias", "audio/conv2_bias"),
      Rule("audio_tower.audio_bos_eos_token.weight", "audio/bos_eos_embedding"),
      Rule("audio_tower.ln_post.weight", "audio/ln_post_scale"),
      Rule("audio_tower.ln_post.bias", "audio/ln_post_bias"),
      Rule("audio_tower.proj.weight", "audio/proj_kernel", _linear),
      Rule("audio_tower.proj.bias", "audio/proj_bias"),
      Rule("visual.patch_embed.proj.weight", "visual/patch_kernel", _patch_embed),
      Rule("visual.merger.ln_q.weight", "visual/merger_norm"),
      Rule("visual.merger.mlp.0.weight", "visual/merger_fc1_kernel", _linear),
      Rule("visual.merger.mlp.0.bias", "visual/merger_fc1_bias"),
      Rule("visual.merger.mlp.2.weight", "visual/merger_fc2_kernel", _linear),
      Rule("visual.merger.mlp.2.bias", "visual/merger_fc2_bias"),
      Rule("model.embed_tokens.weight", "text/embed_tokens"),
      Rule("model.norm.weight", "text/norm"),
  ]
  if not cfg.tie_word_embeddings:
    rules.append(Rule("lm_head.weight", "lm_head", _linear))
  layer = "audio_tower.layers.{i}."
  for source, target, transform in (
      ("self_attn_layer_norm.weight", "attn_norm_scale", _same),
      ("self_attn_layer_norm.bias", "attn_norm_bias", _same),
      ("self_attn.q_proj.weight", "q_kernel", _linear), ("self_attn.q_proj.bias", "q_bias", _same),
      ("self_attn.k_proj.weight", "k_kernel", _linear),
      ("self_attn.v_proj.weight", "v_kernel", _linear), ("self_attn.v_proj.bias", "v_bias", _same),
      ("self_attn.out_proj.weight", "o_kernel", _linear),
      ("self_attn.out_proj.bias", "o_bias", _same),
      ("final_layer_norm.weight", "mlp_norm_scale", _same),
      ("final_layer_norm.bias", "mlp_norm_bias", _same),
      ("fc1.weight", "fc1_kernel", _linear), ("fc1.bias", "fc1_bias", _same),
      ("fc2.weight", "fc2_kernel", _linear), ("fc2.bias", "fc2_bias", _same)):
    rules.append(Rule(layer + source, "audio/layers/" + target, transform, stacked=True))
  layer = "visual.blocks.{i}."
  for source, target, transform in (
      ("norm1.weight", "norm1", _same), ("norm2.weight", "norm2", _same),
      ("attn.q.weight", "q_kernel", _linear), ("attn.q.bias", "q_bias", _same),
      ("attn.k.weight", "k_kernel", _linear), ("attn.k.bias", "k_bias", _same),
      ("attn.v.weight", "v_kernel", _linear), ("attn.v.bias", "v_bias", _same),
      ("attn.proj.weight", "o_kernel", _linear), ("attn.proj.bias", "o_bias", _same),
      ("mlp.gate_proj.weight", "gate_kernel", _linear), ("mlp.gate_proj.bias", "gate_bias", _same),
      ("mlp.up_proj.weight", "up_kernel", _linear), ("mlp.up_proj.bias", "up_bias", _same),
      ("mlp.down_proj.weight", "down_kernel", _linear),
      ("mlp.down_proj.bias", "down_bias", _same)):
    rules.append(Rule(layer + source, "visual/blocks/" + target, transform, stacked=True))
  layer = "model.layers.{i}."
  for source, target, transform in (
      ("input_layernorm.weight", "input_norm", _same),
      ("post_attention_layernorm.weight", "post_norm", _same),
      ("self_attn.q_proj.weight", "q_kernel", _linear), ("self_attn.q_proj.bias", "q_bias", _same),
      ("self_attn.k_proj.weight", "k_kernel", _linear), ("self_attn.k_proj.bias", "k_bias", _same),
      ("self_attn.v_proj.weight", "v_kernel", _linear), ("self_attn.v_proj.bias", "v_bias", _same),
      ("self_attn.o_proj.weight", "o_kernel", _linear),
      ("mlp.gate_proj.weight", "gate_kernel", _linear),
      ("mlp.up_proj.weight", "up_kernel", _linear),
      ("mlp.down_proj.weight", "down_kernel", _linear)):
    rules.append(Rule(layer + source, "text/layers/" + target, transform, stacked=True))
  return rules


def _path(target: str) -> Path:
  return tuple(target.split("/"))


def target_shapes(cfg: ThinkerConfig) -> dict[Path, tuple[int, ...]]:
  """Every parameter of our Thinker (built abstractly, no memory)."""
  return flat_shapes(nnx.eval_shape(lambda: Thinker(cfg, rngs=nnx.Rngs(0))))


class _Slot:
  """Where one source key lands: a parameter path, a layer index or None, a transform."""

  def __init__(self, path: Path, layer: int | None, transform: Callable):
    self.path, self.layer, self.transform = path, layer, transform


def expected_keys(cfg: ThinkerConfig, prefix: str = "",
                  shapes: Mapping[Path, tuple[int, ...]] | None = None) -> dict[str, _Slot]:
  """Full source key → slot, for every key a checkpoint of `cfg` must hold."""
  shapes = target_shapes(cfg) if shapes is None else shapes
  out = {}
  for rule in thinker_rules(cfg):
    path = _path(rule.target)
    if rule.stacked:
      for i in range(shapes[path][0]):
        out[prefix + rule.source.replace("{i}", str(i))] = _Slot(path, i, rule.transform)
    else:
      out[prefix + rule.source] = _Slot(path, None, rule.transform)
  return out


# ---------------------------------------------------------------------------------------------
# Sources: anything with keys(), shape(key) and get(key).

class TensorSource(Protocol):
  def keys(self) -> Iterable[str]: ...
  def shape(self, key: str) -> tuple[int, ...]: ...
  def get(self, key: str) -> np.ndarray: ...


class MappingSource:
  """An in-memory state dict (numpy arrays or torch tensors)."""

  def __init__(self, state: Mapping):
    self._state = state

  def keys(self) -> Iterable[str]:
    return self._state.keys()

  def shape(self, key: str) -> tuple[int, ...]:
    return tuple(self._state[key].shape)

  def get(self, key: str) -> np.ndarray:
    value = self._state[key]
    return value if isinstance(value, np.ndarray) else torch_to_numpy(value)


class SafetensorsSource:
  """One or more safetensors files, read a tensor at a time."""

  def __init__(self, files: Iterable[str]):
    from safetensors import safe_open
    self._handles = {}
    self._where = {}
    for file in files:
      handle = safe_open(file, framework="numpy")
      self._handles[file] = handle
      for key in handle.keys():
        self._where[key] = file

  def keys(self) -> Iterable[str]:
    return self._where.keys()

  def shape(self, key: str) -> tuple[int, ...]:
    return tuple(self._handles[self._where[key]].get_slice(key).get_shape())

  def get(self, key: str) -> np.ndarray:
    handle = self._handles[self._where[key]]
    if handle.get_slice(key).get_dtype() == "BF16":  # numpy has no bf16: reinterpret the bits
      from safetensors import safe_open
      with safe_open(self._where[key], framework="pt") as f:
        return torch_to_numpy(f.get_tensor(key))
    return handle.get_tensor(key)


def open_source(path: str) -> TensorSource:
  """A directory (index.json shards or model.safetensors), a safetensors file or a torch ckpt."""
  if os.path.isdir(path):
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
      with open(index, encoding="utf-8") as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
      return SafetensorsSource([os.path.join(path, s) for s in shards])
    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    if not files:
      raise FileNotFoundError(f"{path!r} holds no safetensors weights")
    return SafetensorsSource([os.path.join(path, f) for f in files])
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint {path!r} does not exist")
  if path.endswith(".safetensors"):
    return SafetensorsSource([path])
  import torch
  blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
  if isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict):
    blob = blob["state_dict"]
  return MappingSource(blob)


def detect_prefix(source: TensorSource) -> str:
  """The thinker prefix of a checkpoint: '', 'thinker.' or Audio-Omni's."""
  keys = set(source.keys())
  for prefix in (THINKER_PREFIX_IN_AUDIO_OMNI, THINKER_PREFIX_IN_QWEN_OMNI, ""):
    for embed in ("model.embed_tokens.weight", "model.language_model.embed_tokens.weight"):
      if prefix + embed in keys:
        return prefix
  raise ConversionError("no Qwen2.5-Omni thinker found: none of the known prefixes holds "
                        "model.embed_tokens.weight")


def _on_disk_name(key: str, prefix: str) -> str:
  rest = key[len(prefix):]
  for old, new in _IN_MEMORY_RENAMES:
    if rest.startswith(old):
      return prefix + new + rest[len(old):]
  return key


# ---------------------------------------------------------------------------------------------
# Conversion.

def _as_source(source) -> TensorSource:
  if isinstance(source, str):
    return open_source(source)
  if isinstance(source, Mapping):
    return MappingSource(source)
  return source


def convert_thinker(source, cfg: ThinkerConfig, prefix: str = "") -> dict[Path, np.ndarray]:
  """Reads the thinker under `prefix` into arrays of our paths, in `cfg.param_dtype`.

  `source`: a state dict, a `TensorSource` or a path. Keys outside `prefix` are ignored (the
  caller routes them); inside it, the key set and every shape must match exactly, else one
  ConversionError lists every problem. Tensors are streamed into the targets one at a time.
  """
  source = _as_source(source)
  shapes = target_shapes(cfg)
  slots = expected_keys(cfg, prefix, shapes)
  names = {_on_disk_name(k, prefix): k for k in source.keys() if k.startswith(prefix)}
  problems = [f"unexpected key (no parameter of ours takes it): {k}"
              for k in sorted(set(names) - set(slots))]
  problems += [f"missing: no checkpoint key {k} (fills {'/'.join(slots[k].path)})"
               for k in sorted(set(slots) - set(names))]
  probe = np.zeros((), np.float32)
  for name in sorted(set(names) & set(slots)):
    slot = slots[name]
    want = shapes[slot.path][1:] if slot.layer is not None else shapes[slot.path]
    got = slot.transform(np.broadcast_to(probe, source.shape(names[name]))).shape
    if tuple(got) != tuple(want):
      problems.append(f"mis-shaped: {names[name]} {tuple(source.shape(names[name]))} becomes "
                      f"{tuple(got)}, but {'/'.join(slot.path)} expects {tuple(want)}")
  if problems:
    raise ConversionError(f"Qwen2.5-Omni thinker (prefix {prefix!r}): {len(problems)} problem(s)"
                          "\n  " + "\n  ".join(problems))
  dtype = np.dtype(ml_dtypes.bfloat16) if cfg.param_dtype == "bfloat16" else np.dtype(cfg.param_dtype)
  out = {path: np.empty(shape, dtype) for path, shape in shapes.items()}
  for name, key in names.items():
    slot = slots[name]
    value = slot.transform(source.get(key))
    if slot.layer is None:
      out[slot.path][...] = value
    else:
      out[slot.path][slot.layer] = value
  return out


def load_thinker(path_or_source, cfg: ThinkerConfig, prefix: str | None = None) -> Thinker:
  """A Thinker filled from a checkpoint; each converted array is freed once on the device."""
  source = _as_source(path_or_source)
  prefix = detect_prefix(source) if prefix is None else prefix
  arrays = convert_thinker(source, cfg, prefix)
  model = nnx.eval_shape(lambda: Thinker(cfg, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  flat = nnx.to_flat_state(state)
  import jax.numpy as jnp
  for path, var in flat:
    var.set_value(jnp.asarray(arrays.pop(tuple(path))))
  return nnx.merge(graphdef, nnx.from_flat_state(flat))
