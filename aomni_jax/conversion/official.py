"""The whole official Audio-Omni checkpoint → our parameters, strictly, component by component.

Components and their key prefixes:
  dit    `model.model.`                                      → conversion.dit.convert_dit
  vae    `pretransform.model.`                               → conversion.vae.convert_vae
  qwen   `conditioner.conditioners.omni_prompt.model.thinker.` → conversion.hf_qwen.convert_thinker
  heads  `conditioner.conditioners.*` (everything else)       → the rules below (ConditionerHeads)
A key outside every prefix, a missing key or a mis-shaped one is an error; all problems of all
components are reported together. Components are converted and handed to a sink one at a time
(`aomni-convert` saves each into the model directory, `inference.model_dir`), so the
4.7 B-parameter checkpoint never sits in host memory twice.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Callable, Iterable, Mapping

import numpy as np
from flax import nnx

from aomni_jax.config import ModelConfig
from aomni_jax.conversion.common import (ConversionError, Path, Rule, conv1d,
                                         convert, dense_rules, flat_shapes, identity)
from aomni_jax.conversion.dit import DIT_PREFIX, convert_dit, expected_official_keys
from aomni_jax.models.conditioners import ConditionerHeads

HEADS_PREFIX = "conditioner.conditioners."
THINKER_PREFIX = "conditioner.conditioners.omni_prompt.model.thinker."
VAE_PREFIX = "pretransform.model."
# Our head name → the official conditioner id.
HEAD_IDS = {"omni": "omni_prompt", "transcript": "speech_prompt", "mel": "audio_input_prompt",
            "sync": "sync_feature"}
COMPONENTS = ("dit", "vae", "heads", "qwen")
QWEN_UNAVAILABLE = "routed to the Qwen converter (not available)"


def _drop_batch_axis(w: np.ndarray) -> np.ndarray:
  """[1, T, D] learned feature → [T, D]."""
  if w.shape[0] != 1:
    raise ConversionError(f"expected a leading batch axis of 1, got {w.shape}")
  return w[0]


def _flatten(w: np.ndarray) -> np.ndarray:
  """GRN's [1, 1, C] γ/β → [C]."""
  return w.reshape(-1)


def _transcript_rules() -> list[Rule]:
  block = "text_embed.text_blocks.{i}."
  rules = [Rule("text_embed.text_embed.weight", "embedding", identity),
           Rule(block + "dwconv.weight", "blocks/{i}/dwconv_kernel", conv1d),
           Rule(block + "dwconv.bias", "blocks/{i}/dwconv_bias", identity),
           Rule(block + "norm.weight", "blocks/{i}/norm/scale", identity),
           Rule(block + "norm.bias", "blocks/{i}/norm/bias", identity),
           Rule(block + "grn.gamma", "blocks/{i}/grn_gamma", _flatten),
           Rule(block + "grn.beta", "blocks/{i}/grn_beta", _flatten),
           Rule("empty_speech_feat", "empty_feature", _drop_batch_axis)]
  rules += dense_rules(block + "pwconv1", "blocks/{i}/pwconv1") + dense_rules(block + "pwconv2",
                                                                     "blocks/{i}/pwconv2")
  return rules + dense_rules("proj_features", "proj") + dense_rules("proj_seq_len", "seq_proj")


def head_rules(head: str) -> list[Rule]:
  """Keys relative to `conditioner.conditioners.<id>.` → paths relative to the head module."""
  if head == "omni":
    return dense_rules("proj_features", "proj")
  if head == "transcript":
    return _transcript_rules()
  if head == "mel":
    return (dense_rules("proj_sequence_features", "seq_proj") + dense_rules("proj_features", "proj")
            + [Rule("empty_audio_feat", "empty_feature", _drop_batch_axis)])
  if head == "sync":
    return ([Rule("norm.weight", "norm/scale", identity), Rule("norm.bias", "norm/bias", identity)]
            + dense_rules("proj", "proj") + dense_rules("dim_project", "seq_proj"))
  raise ValueError(f"unknown head {head!r}; expected one of {tuple(HEAD_IDS)}")


def heads_rules() -> list[Rule]:
  """Keys relative to `conditioner.conditioners.` → paths in ConditionerHeads."""
  return [Rule(f"{HEAD_IDS[head]}.{rule.source}", f"{head}/{rule.target}", rule.transform)
          for head in HEAD_IDS for rule in head_rules(head)]


def _without_thinker(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  return {k: v for k, v in state_dict.items() if not k.startswith(THINKER_PREFIX)}


def convert_head(head: str, state_dict: Mapping[str, np.ndarray],
                 module: nnx.Module) -> dict[Path, np.ndarray]:
  """One head on its own (e.g. a TranscriptEncoder), from `conditioner.conditioners.<id>.*`."""
  return convert(_without_thinker(state_dict), head_rules(head), flat_shapes(module),
                 prefix=f"{HEADS_PREFIX}{HEAD_IDS[head]}.", what=f"{HEAD_IDS[head]} conditioner")


def abstract_heads(cfg: ModelConfig) -> ConditionerHeads:
  return nnx.eval_shape(lambda: ConditionerHeads(cfg, rngs=nnx.Rngs(0)))


def convert_heads(state_dict: Mapping[str, np.ndarray], cfg: ModelConfig) -> dict[Path, np.ndarray]:
  """All conditioner heads (every `conditioner.conditioners.*` key but the Qwen thinker's)."""
  return convert(_without_thinker(state_dict), heads_rules(), flat_shapes(abstract_heads(cfg)),
                 prefix=HEADS_PREFIX, what="conditioner heads")


def expected_head_keys(cfg: ModelConfig) -> set[str]:
  """Every official head key the converter consumes at this config."""
  targets = ["/".join(map(str, path)) for path in flat_shapes(abstract_heads(cfg))]
  keys = set()
  for rule in heads_rules():
    pattern = re.compile("^" + re.escape(rule.target).replace(r"\{i\}", r"(\d+)") + "$")
    for target in targets:
      if match := pattern.match(target):
        keys.add(HEADS_PREFIX + rule.source.replace("{i}", match.group(1) if match.groups()
                                                    else ""))
  return keys


# ---------------------------------------------------------------------------------------------
# The Qwen thinker: routed to its own converter when that module is present.

def _qwen_module():
  try:
    return importlib.import_module("aomni_jax.conversion.hf_qwen")
  except ImportError:
    return None


def qwen_config(cfg: ModelConfig):
  """The thinker architecture: `cfg.qwen.path`'s config.json, else the published 3B sizes."""
  from aomni_jax.models.qwen_omni import config as qwen_cfg
  numerics = {"dtype": cfg.qwen.dtype, "param_dtype": cfg.qwen.param_dtype,
              "attention": cfg.qwen.attention}
  if cfg.qwen.path:
    return qwen_cfg.load_thinker_config(cfg.qwen.path, **numerics)
  return dataclasses.replace(qwen_cfg.QWEN25_OMNI_3B, **numerics)


def expected_qwen_keys(cfg: ModelConfig) -> set[str] | None:
  """The thinker keys the Qwen converter consumes, or None when that converter is absent."""
  module = _qwen_module()
  return None if module is None else set(module.expected_keys(qwen_config(cfg), THINKER_PREFIX))


# ---------------------------------------------------------------------------------------------
# Whole checkpoint.

def component_of(key: str) -> str | None:
  if key.startswith(DIT_PREFIX):
    return "dit"
  if key.startswith(VAE_PREFIX):
    return "vae"
  if key.startswith(THINKER_PREFIX):
    return "qwen"
  if key.startswith(HEADS_PREFIX):
    return "heads"
  return None


def split_keys(keys: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
  """(component → its keys, keys that belong to no component)."""
  parts: dict[str, list[str]] = {c: [] for c in COMPONENTS}
  unknown = []
  for key in keys:
    component = component_of(key)
    (parts[component] if component else unknown).append(key)
  return parts, unknown


def _converters(cfg: ModelConfig) -> dict[str, Callable[[Mapping[str, np.ndarray]], dict]]:
  from aomni_jax.conversion.vae import convert_vae
  out = {"dit": lambda sd: convert_dit(sd, cfg.dit),
         "vae": lambda sd: convert_vae(sd, cfg.vae, prefix=VAE_PREFIX),
         "heads": lambda sd: convert_heads(sd, cfg)}
  module = _qwen_module()
  if module is not None:
    out["qwen"] = lambda sd: module.convert_thinker(sd, qwen_config(cfg), prefix=THINKER_PREFIX)
  return out


def expected_keys(cfg: ModelConfig) -> dict[str, set[str] | None]:
  """Component → every official key its converter consumes (None: converter not available)."""
  from aomni_jax.conversion.vae import official_shapes
  return {"dit": expected_official_keys(cfg.dit), "vae": set(official_shapes(cfg.vae, VAE_PREFIX)),
          "heads": expected_head_keys(cfg), "qwen": expected_qwen_keys(cfg)}


@dataclasses.dataclass
class Report:
  """What happened to every checkpoint key."""

  converted: dict[str, int]  # component → number of source keys consumed
  not_converted: dict[str, list[str]]  # reason → keys (e.g. QWEN_UNAVAILABLE)

  def lines(self) -> list[str]:
    out = [f"{c}: {n} keys converted" for c, n in self.converted.items()]
    out += [f"{len(keys)} keys {reason}" for reason, keys in self.not_converted.items()]
    return out


def convert_official(read: Callable[[list[str]], Mapping[str, np.ndarray]], keys: Iterable[str],
                     cfg: ModelConfig, sink: Callable[[str, dict[Path, np.ndarray]], None], *,
                     skip: Iterable[str] = ()) -> Report:
  """Converts every component of a checkpoint, one at a time.

  `read(keys)` loads those tensors; `sink(component, arrays)` receives each converted component
  (save it, then it can be freed). Components named in `skip` are neither required nor read.
  Every problem of every component is collected and raised as one ConversionError after all
  components were tried.
  """
  skip = set(skip)
  if skip - set(COMPONENTS):
    raise ValueError(f"cannot skip {sorted(skip - set(COMPONENTS))}; components: {COMPONENTS}")
  parts, unknown = split_keys(keys)
  problems = [f"unexpected key (belongs to no component): {k}" for k in sorted(unknown)]
  converters = _converters(cfg)
  # Key names first (no tensor read), so a wrong checkpoint fails before gigabytes are read.
  for component, expected in expected_keys(cfg).items():
    if component in skip or component not in converters or expected is None:
      continue
    present = set(parts[component])
    problems += [f"missing {component} key: {k}" for k in sorted(expected - present)]
    problems += [f"unexpected {component} key: {k}" for k in sorted(present - expected)]
  if problems:
    raise ConversionError(f"official checkpoint: {len(problems)} key problem(s)\n  "
                          + "\n  ".join(problems))
  report = Report({}, {})
  for component in COMPONENTS:
    if component in skip or component not in converters:
      reason = f"of {component} skipped" if component in skip else QWEN_UNAVAILABLE
      if parts[component]:
        report.not_converted[reason] = sorted(parts[component])
      continue
    try:
      arrays = converters[component](read(parts[component]))
    except ConversionError as error:
      problems.append(str(error))
      continue
    sink(component, arrays)
    report.converted[component] = len(parts[component])
  if problems:
    raise ConversionError("official checkpoint: conversion failed\n" + "\n".join(problems))
  return report
