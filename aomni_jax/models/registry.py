"""Which code builds each trainable module: a small registry keyed by `model.modules`.

Training (`train.state.build_trainable`), checkpoint/weight loading, inference
(`inference.engine`, `inference.pipeline`) and `aomni-sample` all build the DiT and the
conditioner heads through `build`, so a module swapped here is trained, checkpointed, exported
and generated with the normal commands.

A builder is `fn(model_config, rngs) -> nnx.Module`. Name it in the config either by a registered
name (`register("dit", "mine")` in a module your config file imports) or by an import path,
`model.modules.dit=my_package.my_module:build_dit`, which is imported on use (so a model
directory's config.json names the code that rebuilds it). "default" is the official architecture.
A replacement must keep the interface its callers use: the DiT's `__call__`/`forward`/
`prepare_context`/`unstack_layers` (subclass `DiffusionTransformer`, or build one with an
`attention_fn`), the heads' `__call__(ConditionerInputs) -> DiTConditioning`.
"""

from __future__ import annotations

import importlib
from typing import Callable

from flax import nnx

from aomni_jax.config import ModelConfig
from aomni_jax.models.conditioners import ConditionerHeads
from aomni_jax.models.dit import DiffusionTransformer

Builder = Callable[[ModelConfig, nnx.Rngs], nnx.Module]

_BUILDERS: dict[str, dict[str, Builder]] = {
    "dit": {"default": lambda model, rngs: DiffusionTransformer(model.dit, rngs=rngs)},
    "heads": {"default": lambda model, rngs: ConditionerHeads(model, rngs=rngs)},
}
COMPONENTS = tuple(_BUILDERS)


def register(component: str, name: str) -> Callable[[Builder], Builder]:
  """Decorator: `@register("dit", "my_dit")` makes `model.modules.dit="my_dit"` use the function."""
  if component not in _BUILDERS:
    raise ValueError(f"unknown component {component!r}; registrable: {', '.join(COMPONENTS)}")

  def add(fn: Builder) -> Builder:
    if name in _BUILDERS[component] and _BUILDERS[component][name] is not fn:
      raise ValueError(f"a {component} builder named {name!r} is already registered")
    _BUILDERS[component][name] = fn
    return fn

  return add


def builder(component: str, name: str) -> Builder:
  """The builder `name` of `component`: registered, or imported from `module:function`."""
  if component not in _BUILDERS:
    raise ValueError(f"unknown component {component!r}; registrable: {', '.join(COMPONENTS)}")
  if name in _BUILDERS[component]:
    return _BUILDERS[component][name]
  if ":" not in name:
    raise ValueError(f"model.modules.{component}={name!r} is neither registered "
                     f"({', '.join(sorted(_BUILDERS[component]))}) nor a module:function path")
  module_name, attr = name.split(":", 1)
  try:
    fn = getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError) as err:
    raise ValueError(f"model.modules.{component}={name!r} cannot be imported: {err}") from err
  if not callable(fn):
    raise ValueError(f"model.modules.{component}={name!r} is not callable")
  return fn


def build(component: str, model: ModelConfig, rngs: nnx.Rngs) -> nnx.Module:
  """Builds `component` ("dit" or "heads") with the builder `model.modules` names."""
  return builder(component, getattr(model.modules, component))(model, rngs)


def build_dit(model: ModelConfig, rngs: nnx.Rngs) -> nnx.Module:
  return build("dit", model, rngs)


def build_heads(model: ModelConfig, rngs: nnx.Rngs) -> nnx.Module:
  return build("heads", model, rngs)
