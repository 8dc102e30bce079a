"""Official Oobleck VAE weights (`pretransform.model.*`) → `models.vae.OobleckVAE` parameters.

The official convs use the legacy `torch.nn.utils.weight_norm` (`weight_g`, `weight_v`); they are
folded into plain kernels here (already-folded `weight` keys are accepted too). The key table is
generated from the config, so every size of the model converts with the same code.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

import numpy as np
from flax import nnx

from aomni_jax.config import VAEConfig
from aomni_jax.conversion import common
from aomni_jax.models.vae import OobleckVAE

PREFIX = "pretransform.model."


@dataclasses.dataclass(frozen=True)
class _Slot:
  """One official module: its key stem, our module path, and what kind of layer it is."""

  source: str  # e.g. "encoder.layers.1.layers.4"
  target: str  # e.g. "encoder/blocks/0/down"
  kind: str  # "conv" | "conv_nobias" | "conv_transpose" | "snake"


def _residual_slots(source: str, target: str) -> list[_Slot]:
  return [_Slot(f"{source}.layers.0", f"{target}/snake_in", "snake"),
          _Slot(f"{source}.layers.1", f"{target}/conv_dilated", "conv"),
          _Slot(f"{source}.layers.2", f"{target}/snake_mid", "snake"),
          _Slot(f"{source}.layers.3", f"{target}/conv_pointwise", "conv")]


def _slots(cfg: VAEConfig) -> list[_Slot]:
  """The official `nn.Sequential` slot numbering (official_spec §6) against our module tree."""
  n = len(cfg.strides)
  slots = [_Slot("encoder.layers.0", "encoder/conv_in", "conv")]
  for i in range(n):
    src, dst = f"encoder.layers.{i + 1}", f"encoder/blocks/{i}"
    for j in range(3):
      slots += _residual_slots(f"{src}.layers.{j}", f"{dst}/res_units/{j}")
    slots += [_Slot(f"{src}.layers.3", f"{dst}/snake", "snake"),
              _Slot(f"{src}.layers.4", f"{dst}/down", "conv")]
  slots += [_Slot(f"encoder.layers.{n + 1}", "encoder/snake_out", "snake"),
            _Slot(f"encoder.layers.{n + 2}", "encoder/conv_out", "conv"),
            _Slot("decoder.layers.0", "decoder/conv_in", "conv")]
  for i in range(n):
    src, dst = f"decoder.layers.{i + 1}", f"decoder/blocks/{i}"
    slots += [_Slot(f"{src}.layers.0", f"{dst}/snake", "snake"),
              _Slot(f"{src}.layers.1", f"{dst}/up", "conv_transpose")]
    for j in range(3):
      slots += _residual_slots(f"{src}.layers.{j + 2}", f"{dst}/res_units/{j}")
  slots += [_Slot(f"decoder.layers.{n + 1}", "decoder/snake_out", "snake"),
            _Slot(f"decoder.layers.{n + 2}", "decoder/conv_out", "conv_nobias")]
  return slots


def _rules(cfg: VAEConfig) -> list[common.Rule]:
  rules = []
  for slot in _slots(cfg):
    if slot.kind == "snake":
      rules += [common.Rule(f"{slot.source}.alpha", f"{slot.target}/alpha"),
                common.Rule(f"{slot.source}.beta", f"{slot.target}/beta")]
      continue
    transform = common.conv_transpose1d if slot.kind == "conv_transpose" else common.conv1d
    rules.append(common.Rule(f"{slot.source}.weight", f"{slot.target}/kernel", transform))
    if slot.kind != "conv_nobias":
      rules.append(common.Rule(f"{slot.source}.bias", f"{slot.target}/bias"))
  return rules


def target_shapes(cfg: VAEConfig) -> dict[common.Path, tuple[int, ...]]:
  """Our parameter paths and shapes, from an abstract (allocation-free) model."""
  return dict(_target_shapes(cfg))


@functools.lru_cache(maxsize=8)
def _target_shapes(cfg: VAEConfig) -> dict[common.Path, tuple[int, ...]]:
  return common.flat_shapes(nnx.eval_shape(lambda: OobleckVAE(cfg, rngs=nnx.Rngs(0))))


def official_shapes(cfg: VAEConfig, prefix: str = PREFIX) -> dict[str, tuple[int, ...]]:
  """Every official checkpoint key (weight-norm form) this converter expects, with its shape."""
  ours = {"/".join(map(str, path)): shape for path, shape in target_shapes(cfg).items()}
  out = {}
  for slot in _slots(cfg):
    key = prefix + slot.source
    if slot.kind == "snake":
      out[key + ".alpha"] = ours[slot.target + "/alpha"]
      out[key + ".beta"] = ours[slot.target + "/beta"]
      continue
    k, c_in, c_out = ours[slot.target + "/kernel"]
    # Conv1d v is [out, in, k] (g per output channel); ConvTranspose1d v is [in, out, k].
    first, second = (c_in, c_out) if slot.kind == "conv_transpose" else (c_out, c_in)
    out[key + ".weight_g"] = (first, 1, 1)
    out[key + ".weight_v"] = (first, second, k)
    if slot.kind != "conv_nobias":
      out[key + ".bias"] = ours[slot.target + "/bias"]
  return out


def convert_vae(state_dict: Mapping[str, np.ndarray], cfg: VAEConfig,
                prefix: str = PREFIX) -> dict[common.Path, np.ndarray]:
  """Folds weight norm and maps every `prefix*` key onto our paths (strict; others ignored)."""
  ours = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
  return common.convert(common.fold_weight_norms(ours), _rules(cfg), target_shapes(cfg),
                        prefix=prefix, what="VAE checkpoint")


def random_vae(cfg: VAEConfig, seed: int = 0) -> OobleckVAE:
  """A VAE with random weights of the golden fixtures' statistics, for tests and benchmarks.

  Every parameter is random (SnakeBeta α/β and biases too, unlike the zero-initialised model),
  and kernels are N(0, 0.56/fan_in) like the fixtures' folded weights, so activations stay O(1).
  """
  rng = np.random.default_rng(seed)
  arrays = {}
  for path, shape in target_shapes(cfg).items():
    if path[-1] == "kernel":
      std = 0.75 / np.sqrt(shape[0] * shape[1])
    else:
      std = 0.1 if path[-1] == "bias" else 0.2
    arrays[path] = rng.standard_normal(shape, np.float32) * np.float32(std)
  return common.build_loaded(lambda: OobleckVAE(cfg, rngs=nnx.Rngs(0)), arrays)


def load_vae(state_dict: Mapping[str, np.ndarray], cfg: VAEConfig,
             prefix: str = PREFIX) -> OobleckVAE:
  """Builds an OobleckVAE holding the converted official weights."""
  return common.build_loaded(lambda: OobleckVAE(cfg, rngs=nnx.Rngs(0)),
                             convert_vae(state_dict, cfg, prefix))
