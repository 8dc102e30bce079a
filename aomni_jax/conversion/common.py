"""Key-map utilities shared by every converter.

A converter is data: a list of `Rule`s mapping official key patterns to our parameter paths with a
layout transform. `convert` applies them strictly — every source key must be used (or be a checked
constant), every parameter of ours must be filled, every shape must match — and reports all
problems at once in one readable error.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, Iterable, Mapping

import jax
import numpy as np
from flax import nnx

Path = tuple  # a parameter path inside an nnx state, e.g. ("blocks", "self_attn", "qkv", "kernel")
Transform = Callable[[np.ndarray], np.ndarray]


class ConversionError(ValueError):
  """Missing, unexpected or mis-shaped checkpoint entries (the message lists all of them)."""


# ---------------------------------------------------------------------------------------------
# Layout transforms (PyTorch → Flax).

def identity(w: np.ndarray) -> np.ndarray:
  return w


def linear(w: np.ndarray) -> np.ndarray:
  """nn.Linear [out, in] → Dense kernel [in, out]."""
  return np.ascontiguousarray(w.T)


def fused_linear(w: np.ndarray, parts: int) -> np.ndarray:
  """nn.Linear [parts · out, in] of fused projections → FusedDense kernel [in, parts, out]."""
  if w.ndim != 2 or w.shape[0] % parts:
    raise ConversionError(f"expected a [{parts} x out, in] fused linear weight, got {w.shape}")
  return np.ascontiguousarray(w.T.reshape(w.shape[1], parts, w.shape[0] // parts))


def fused_bias(b: np.ndarray, parts: int) -> np.ndarray:
  """Bias [parts · out] of fused projections → FusedDense bias [parts, out]."""
  if b.ndim != 1 or b.shape[0] % parts:
    raise ConversionError(f"expected a [{parts} x out] fused bias, got {b.shape}")
  return np.ascontiguousarray(b.reshape(parts, -1))


def conv1d(w: np.ndarray) -> np.ndarray:
  """nn.Conv1d [out, in/groups, k] → Flax [k, in/groups, out]."""
  return np.ascontiguousarray(w.transpose(2, 1, 0))


def conv1x1_as_linear(w: np.ndarray) -> np.ndarray:
  """A 1×1 Conv1d [out, in, 1] used as a per-frame linear map → Dense kernel [in, out]."""
  if w.ndim != 3 or w.shape[-1] != 1:
    raise ConversionError(f"expected a [out, in, 1] 1x1 conv weight, got {w.shape}")
  return np.ascontiguousarray(w[:, :, 0].T)


def conv_transpose1d(w: np.ndarray) -> np.ndarray:
  """nn.ConvTranspose1d [in, out, k] → the equivalent forward-conv kernel [k, in, out], flipped.

  With this kernel, a stride-1 convolution of the input dilated by the stride and padded
  k − 1 − p on both sides equals PyTorch's ConvTranspose1d with padding p.
  """
  return np.ascontiguousarray(w[:, :, ::-1].transpose(2, 0, 1))


def fold_weight_norm(g: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Legacy `torch.nn.utils.weight_norm` with dim=0: W = g · v / ‖v‖ (norm over all dims but 0)."""
  axes = tuple(range(1, v.ndim))
  norm = np.sqrt(np.sum(np.square(v.astype(np.float64)), axis=axes, keepdims=True))
  return (g.astype(np.float64) * v / norm).astype(v.dtype)


def fold_weight_norms(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Replaces every `X.weight_g` / `X.weight_v` pair with the folded `X.weight`."""
  out = dict(state)
  for key in [k for k in state if k.endswith(".weight_g")]:
    base = key[: -len(".weight_g")]
    v_key = base + ".weight_v"
    if v_key not in state:
      raise ConversionError(f"{key} has no matching {v_key}")
    out[base + ".weight"] = fold_weight_norm(out.pop(key), out.pop(v_key))
  orphans = [k for k in out if k.endswith(".weight_v")]
  if orphans:
    raise ConversionError(f"weight_v without weight_g: {orphans}")
  return out


# ---------------------------------------------------------------------------------------------
# Rules.

@dataclasses.dataclass(frozen=True)
class Rule:
  """Official key pattern → our path.

  `source` may contain `{i}`: a layer index. When `stacked` is true the indexed tensors are
  stacked along a new leading axis (scanned layers); otherwise `{i}` is substituted into `target`.
  `target` is a "/"-separated path.
  """

  source: str
  target: str
  transform: Transform = identity
  stacked: bool = False

  def regex(self) -> re.Pattern:
    return re.compile("^" + re.escape(self.source).replace(r"\{i\}", r"(\d+)") + "$")


def dense_rules(source: str, target: str) -> list[Rule]:
  """A torch `nn.Linear` (`.weight` [out, in], `.bias`) → a Dense's `kernel` [in, out], `bias`."""
  return [Rule(f"{source}.weight", f"{target}/kernel", linear),
          Rule(f"{source}.bias", f"{target}/bias", identity)]


@dataclasses.dataclass(frozen=True)
class ConstantCheck:
  """A buffer that is recomputed rather than stored (e.g. rotary `inv_freq`): verify, then drop."""

  source: str
  expected: Callable[[], np.ndarray]
  atol: float = 1e-6


def _parse_path(path: str, index: str | None) -> Path:
  parts = path.replace("{i}", index or "").split("/")
  return tuple(int(p) if p.isdigit() else p for p in parts)


def convert(source: Mapping[str, np.ndarray], rules: Iterable[Rule],
            target_shapes: Mapping[Path, tuple[int, ...]], *, prefix: str = "",
            checks: Iterable[ConstantCheck] = (), what: str = "checkpoint") -> dict[Path, np.ndarray]:
  """Maps `source` (official keys) onto our paths; raises ConversionError listing every problem.

  Keys outside `prefix` are ignored (the caller routes them); inside it, every key must match a
  rule or a constant check.
  """
  rules = list(rules)
  compiled = [(rule, rule.regex()) for rule in rules]
  checks = {c.source: c for c in checks}
  out: dict[Path, np.ndarray] = {}
  stacks: dict[Path, dict[int, np.ndarray]] = {}
  unexpected, bad_constants = [], []
  for full_key, value in source.items():
    if not full_key.startswith(prefix):
      continue
    key = full_key[len(prefix):]
    if key in checks:
      expected = np.asarray(checks[key].expected())
      if value.shape != expected.shape or not np.allclose(value, expected, atol=checks[key].atol):
        bad_constants.append(f"{full_key}: stored value differs from the recomputed constant")
      continue
    for rule, regex in compiled:
      match = regex.match(key)
      if match is None:
        continue
      index = match.group(1) if match.groups() else None
      array = rule.transform(np.asarray(value))
      if rule.stacked:
        stacks.setdefault(_parse_path(rule.target, None), {})[int(index)] = array
      else:
        out[_parse_path(rule.target, index)] = array
      break
    else:
      unexpected.append(full_key)
  problems = [f"unexpected key (no parameter of ours takes it): {k}" for k in sorted(unexpected)]
  problems += bad_constants
  for path, layers in stacks.items():
    indices = sorted(layers)
    if indices != list(range(len(indices))):
      problems.append(f"{'/'.join(map(str, path))}: layer indices {indices} are not 0..n-1")
      continue
    shapes = {tuple(layers[i].shape) for i in indices}
    if len(shapes) > 1:
      odd = [i for i in indices if tuple(layers[i].shape) != tuple(layers[0].shape)]
      problems.append(f"mis-shaped: {'/'.join(map(str, path))} layers {odd} have shapes "
                      f"{[tuple(layers[i].shape) for i in odd]}, layer 0 has "
                      f"{tuple(layers[0].shape)}")
      continue
    out[path] = np.stack([layers[i] for i in indices])
  for path, shape in target_shapes.items():
    name = "/".join(map(str, path))
    if path not in out:
      problems.append(f"missing: no {what} key fills parameter {name} {tuple(shape)}")
    elif tuple(out[path].shape) != tuple(shape):
      problems.append(f"mis-shaped: {name} expects {tuple(shape)}, "
                      f"checkpoint gives {tuple(out[path].shape)}")
  for path in sorted(set(out) - set(target_shapes), key=str):
    problems.append(f"unexpected: {'/'.join(map(str, path))} is not a parameter of the model")
  if problems:
    raise ConversionError(f"{what}: {len(problems)} problem(s)\n  " + "\n  ".join(problems))
  return out


# ---------------------------------------------------------------------------------------------
# nnx state <-> flat dicts.

def flat_shapes(model_or_state) -> dict[Path, tuple[int, ...]]:
  """Path → shape for every Variable (Params and Buffers) of a (possibly abstract) module."""
  state = model_or_state if isinstance(model_or_state, nnx.State) else nnx.state(model_or_state)
  return {tuple(path): tuple(var.shape) for path, var in nnx.to_flat_state(state)}


def build_loaded(make: Callable[[], nnx.Module], arrays: Mapping[Path, np.ndarray]) -> nnx.Module:
  """Builds `make()` abstractly (no initialiser runs) and fills it with converted arrays.

  At full size this skips initialising billions of parameters that would be overwritten; the
  parameters end up on the default device, so jitted calls do not re-upload them.
  """
  graphdef, state = nnx.split(load_into(nnx.eval_shape(make), arrays))
  return nnx.merge(graphdef, jax.device_put(state))


def load_into(model: nnx.Module, arrays: Mapping[Path, np.ndarray]) -> nnx.Module:
  """Writes converted arrays into `model` (in place), casting to each Variable's dtype."""
  state = nnx.state(model)
  flat = nnx.to_flat_state(state)
  for path, var in flat:
    value = arrays[tuple(path)]
    var.set_value(np.asarray(value).astype(var.get_value().dtype))
  nnx.update(model, nnx.from_flat_state(flat))
  return model


# ---------------------------------------------------------------------------------------------
# Reading checkpoints.

def read_state_dict(path: str, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
  """Reads a safetensors file or a torch `.ckpt`/`.pt`/`.pth` (weights_only=True) into numpy.

  bf16 tensors become `ml_dtypes.bfloat16` arrays. `keys` limits what is read (safetensors only
  reads those bytes), so large checkpoints can be converted piece by piece.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint {path!r} does not exist")
  if path.endswith(".safetensors"):
    from safetensors import safe_open
    out = {}
    with safe_open(path, framework="numpy") as f:
      wanted = f.keys() if keys is None else [k for k in keys if k in set(f.keys())]
      for key in wanted:
        out[key] = f.get_tensor(key)
    return out
  try:
    import torch
  except ImportError as e:
    raise ConversionError(f"{path} is a torch checkpoint; install torch to read it "
                          "(or convert it to safetensors)") from e
  blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
  if isinstance(blob, dict) and "state_dict" in blob and isinstance(blob["state_dict"], dict):
    blob = blob["state_dict"]
  wanted = set(keys) if keys is not None else None
  out = {}
  for key, tensor in blob.items():
    if not hasattr(tensor, "numpy") or (wanted is not None and key not in wanted):
      continue
    out[key] = torch_to_numpy(tensor)
  return out


def torch_to_numpy(tensor) -> np.ndarray:
  """A CPU torch tensor → numpy, keeping bf16 as ml_dtypes.bfloat16 (numpy has no bf16)."""
  import ml_dtypes
  import torch
  tensor = tensor.detach().cpu()
  if tensor.dtype == torch.bfloat16:
    return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
  return tensor.numpy()
