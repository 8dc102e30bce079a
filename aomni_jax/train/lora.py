"""Low-rank adapters (LoRA) on the DiT's attention and MLP projections, kept as their own pytree.

With `train.lora_rank = r > 0` the train state's `params` hold only the adapters
{"dit": {"path/of/kernel": {"a": [..., in, r], "b": [..., r, out]}}}; the DiT and the heads sit
unchanged in `frozen` and never enter the differentiated pytree. Inside the step each target
kernel W becomes W + (alpha / r) · A @ B (leading axes, e.g. scanned layers, are batched), so the
model code needs no LoRA layers and any attention backend works. B starts at zero: training
starts exactly at the base model. `merge` gives plain DiT weights again for export.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding

from aomni_jax import parallel
from aomni_jax.config import TrainConfig

# Kernels in these sub-modules of the DiT's transformer blocks get adapters.
TARGET_MODULES = ("self_attn", "cross_attn", "ff")


def _path_key(path: tuple) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def target_kernels(dit_params: Any) -> dict[str, Any]:
  """{"blocks/.../kernel": leaf} of the attention and MLP projection kernels of the blocks."""
  found = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(dit_params)[0]:
    parts = _path_key(path).split("/")
    if parts[0] == "blocks" and parts[-1] == "kernel" and any(m in parts for m in TARGET_MODULES):
      found["/".join(parts)] = leaf
  if not found:
    raise ValueError("no DiT attention / MLP kernels found for LoRA")
  return found


def scale(cfg: TrainConfig) -> float:
  return (cfg.lora_alpha or cfg.lora_rank) / cfg.lora_rank


def abstract_adapters(dit_params: Any, dit_axes: Any, rank: int, mesh: Mesh,
                      rules: tuple) -> tuple[dict, dict]:
  """(ShapeDtypeStructs, NamedShardings) of the adapters; A shards like W's input axis, B like
  its output axis, leading (layer) axes like W."""
  axes = {k: a.axes for k, a in target_kernels(dit_axes).items()}  # `_Axes` leaves
  shapes, shardings = {}, {}
  for key, kernel in target_kernels(dit_params).items():
    *lead, d_in, d_out = kernel.shape
    names = axes[key] or (None,) * kernel.ndim
    a_shape, b_shape = (*lead, d_in, rank), (*lead, rank, d_out)
    a_axes, b_axes = (*names[:-1], None), (*names[:-2], None, names[-1])
    shapes[key] = {"a": jax.ShapeDtypeStruct(a_shape, jnp.float32),
                   "b": jax.ShapeDtypeStruct(b_shape, jnp.float32)}
    shardings[key] = {
        "a": NamedSharding(mesh, parallel.logical_to_spec(a_axes, a_shape, mesh, rules)),
        "b": NamedSharding(mesh, parallel.logical_to_spec(b_axes, b_shape, mesh, rules))}
  return shapes, shardings


def init_adapters(shapes: dict, key: jax.Array) -> dict:
  """A ~ N(0, 1/in), B = 0 (the adapted model equals the base model at step 0)."""
  out = {}
  for i, (name, pair) in enumerate(sorted(shapes.items())):
    fan_in = pair["a"].shape[-2]
    out[name] = {"a": jax.random.normal(jax.random.fold_in(key, i), pair["a"].shape,
                                        jnp.float32) / jnp.sqrt(fan_in),
                 "b": jnp.zeros(pair["b"].shape, jnp.float32)}
  return out


def merge(dit_params: Any, adapters: dict, factor: float) -> Any:
  """The DiT params with W + factor · A @ B at every adapted kernel (W keeps its dtype)."""

  def adapt(path, leaf):
    pair = adapters.get(_path_key(path))
    if pair is None:
      return leaf
    delta = jnp.einsum("...ir,...ro->...io", pair["a"], pair["b"])
    return (leaf.astype(jnp.float32) + factor * delta).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(adapt, dit_params)


def module_weights(params: dict, frozen: dict, cfg: TrainConfig) -> dict:
  """{"dit", "heads"} module weights from a state's params: themselves without LoRA (`frozen`
  empty), else the frozen base with the adapters merged into the DiT."""
  if not frozen:
    return params
  return {"dit": merge(frozen["dit"], params["dit"], scale(cfg)), "heads": frozen["heads"]}
