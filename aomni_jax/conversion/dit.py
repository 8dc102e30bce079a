"""Official DiT keys (`model.model.*`) → our DiffusionTransformer parameters."""

from __future__ import annotations

import functools
from typing import Mapping

import numpy as np
from flax import nnx

from aomni_jax.config import DiTConfig
from aomni_jax.conversion.common import (ConstantCheck, Path, Rule, build_loaded,
                                         conv1x1_as_linear, convert, flat_shapes, fused_bias,
                                         fused_linear, identity, linear)
from aomni_jax.layers.rotary import inverse_frequencies
from aomni_jax.models.dit import DiffusionTransformer

DIT_PREFIX = "model.model."


def _block_rules() -> list[Rule]:
  layer = "transformer.layers.{i}."
  norms = [(name, ours) for name, ours in (("pre_norm", "pre_norm"),
                                           ("cross_attend_norm", "cross_norm"),
                                           ("ff_norm", "ff_norm"))]
  rules = []
  for name, ours in norms:
    rules += [Rule(layer + f"{name}.gamma", f"blocks/{ours}/scale", identity, stacked=True),
              Rule(layer + f"{name}.beta", f"blocks/{ours}/bias", identity, stacked=True)]
  weights = [("self_attn.to_out.weight", "blocks/self_attn/out/kernel"),
             ("cross_attn.to_q.weight", "blocks/cross_attn/q/kernel"),
             ("cross_attn.to_out.weight", "blocks/cross_attn/out/kernel"),
             ("ff.ff.2.weight", "blocks/ff/proj_out/kernel")]
  fused = [("self_attn.to_qkv.weight", "blocks/self_attn/qkv/kernel", 3),
           ("cross_attn.to_kv.weight", "blocks/cross_attn/kv/kernel", 2),
           ("ff.ff.0.proj.weight", "blocks/ff/proj_in/kernel", 2)]
  rules += [Rule(layer + src, dst, linear, stacked=True) for src, dst in weights]
  rules += [Rule(layer + src, dst, functools.partial(fused_linear, parts=parts), stacked=True)
            for src, dst, parts in fused]
  rules += [Rule(layer + "ff.ff.0.proj.bias", "blocks/ff/proj_in/bias",
                 functools.partial(fused_bias, parts=2), stacked=True),
            Rule(layer + "ff.ff.2.bias", "blocks/ff/proj_out/bias", identity, stacked=True)]
  return rules


def dit_rules() -> list[Rule]:
  """The whole mapping, as data."""
  rules = [Rule("timestep_features.weight", "timestep_features", identity),
           Rule("preprocess_conv.weight", "preprocess/kernel", conv1x1_as_linear),
           Rule("postprocess_conv.weight", "postprocess/kernel", conv1x1_as_linear),
           Rule("transformer.project_in.weight", "project_in/kernel", linear),
           Rule("transformer.project_out.weight", "project_out/kernel", linear)]
  for src, dst in (("to_timestep_embed", "to_timestep"), ("to_cond_embed", "to_cond"),
                   ("to_global_embed", "to_global")):
    rules += [Rule(f"{src}.0.weight", f"{dst}/fc1/kernel", linear),
              Rule(f"{src}.2.weight", f"{dst}/fc2/kernel", linear)]
  rules += [Rule("to_timestep_embed.0.bias", "to_timestep/fc1/bias", identity),
            Rule("to_timestep_embed.2.bias", "to_timestep/fc2/bias", identity)]
  return rules + _block_rules()


def dit_checks(cfg: DiTConfig) -> list[ConstantCheck]:
  """Buffers we recompute instead of storing: verified against the checkpoint, then dropped."""
  return [ConstantCheck("transformer.rotary_pos_emb.inv_freq",
                        lambda: np.asarray(inverse_frequencies(cfg.rotary_dim, cfg.rotary_base)))]


def abstract_dit(cfg: DiTConfig) -> DiffusionTransformer:
  """The module with ShapeDtypeStructs instead of arrays: shapes without allocating 12 GB."""
  return nnx.eval_shape(lambda: DiffusionTransformer(cfg, rngs=nnx.Rngs(0)))


def convert_dit(state_dict: Mapping[str, np.ndarray], cfg: DiTConfig,
                prefix: str = DIT_PREFIX) -> dict[Path, np.ndarray]:
  """Strictly converts the `prefix`-ed DiT entries of an official state dict."""
  return convert(state_dict, dit_rules(), flat_shapes(abstract_dit(cfg)), prefix=prefix,
                 checks=dit_checks(cfg), what="DiT checkpoint")


def expected_official_keys(cfg: DiTConfig, prefix: str = DIT_PREFIX) -> set[str]:
  """Every official key (with prefix) the converter consumes at this config."""
  keys = {prefix + c.source for c in dit_checks(cfg)}
  for rule in dit_rules():
    if "{i}" in rule.source:
      keys |= {prefix + rule.source.replace("{i}", str(i)) for i in range(cfg.depth)}
    else:
      keys.add(prefix + rule.source)
  return keys


def load_dit(state_dict: Mapping[str, np.ndarray], cfg: DiTConfig,
             prefix: str = DIT_PREFIX) -> DiffusionTransformer:
  """Builds a DiffusionTransformer holding the converted official weights."""
  return build_loaded(lambda: DiffusionTransformer(cfg, rngs=nnx.Rngs(0)),
                      convert_dit(state_dict, cfg, prefix))
