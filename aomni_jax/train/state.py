"""The training state: a plain pytree, created inside `jit` directly into its shardings.

Trainable modules (the DiT and the conditioner heads, or the VAE and its discriminator) are split once into static graphdefs and
array pytrees (pure dicts). Nothing here materialises the full model on one host: shapes and
shardings come from `nnx.eval_shape`, and the real arrays are produced by a jitted initialiser
whose `out_shardings` place every shard on its device.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from aomni_jax import parallel
from aomni_jax.config import Config
from aomni_jax.train import lora, optim


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; checkpointed as one pytree."""

  step: jax.Array  # int32 []
  # What the optimiser updates, fp32 (pure dicts): {module name: ...}, e.g. "dit", "heads", or
  # with LoRA only the adapters {"dit": {kernel path: {"a", "b"}}} (`train.lora`).
  params: dict
  buffers: dict  # non-trainable persistent variables of the modules (constants)
  opt_state: optax.OptState
  ema_params: dict  # fp32, sharded like params
  rng: jax.Array  # uint32 [2]: the run's base key; step keys fold in the step number
  # With LoRA: the base {"dit", "heads"} weights, not differentiated; otherwise {}.
  frozen: dict = flax.struct.field(default_factory=dict)


def build_trainable(config: Config, rngs: nnx.Rngs) -> dict[str, nnx.Module]:
  """The modules that training updates, built as `model.modules` names them
  (`aomni_jax.models.registry`). Imported lazily so that importing this file is cheap."""
  from aomni_jax.models import registry  # pylint: disable=g-import-not-at-top
  return {name: registry.build(name, config.model, rngs) for name in ("dit", "heads")}


@dataclasses.dataclass(frozen=True)
class StateSpec:
  """Static description of the train state: graphdefs, abstract arrays and their shardings."""

  graphdefs: dict[str, nnx.GraphDef]
  abstract: TrainState  # ShapeDtypeStructs carrying their target sharding
  shardings: TrainState  # NamedShardings, same structure
  param_axes: dict  # logical axis names per parameter (for reports and the decay mask)
  tx: optax.GradientTransformation


def _split(modules: dict[str, nnx.Module]) -> tuple[dict, dict, dict]:
  graphdefs, params, buffers = {}, {}, {}
  for name, module in modules.items():
    graphdefs[name], params[name], buffers[name] = nnx.split(module, nnx.Param, ...)
  return graphdefs, params, buffers


def default_optimizer(config: Config, params: dict, axes: dict) -> optax.GradientTransformation:
  """One AdamW (`optim.build_optimizer`) over every trainable module."""
  return optim.build_optimizer(config.train, optim.weight_decay_mask(params, axes))


def make_state_spec(config: Config, mesh: Mesh,
                    build: Callable[[Config, nnx.Rngs], dict[str, nnx.Module]] = build_trainable,
                    make_optimizer: Callable[[Config, dict, dict], optax.GradientTransformation]
                    = default_optimizer) -> StateSpec:
  """Shapes and shardings of the train state, without allocating it.

  `build` returns the trainable modules by name (the top-level keys of `params`);
  `make_optimizer(config, pure params, logical axes)` the optax transformation over all of them.
  """
  rules = config.mesh.rules
  abstract_modules = nnx.eval_shape(lambda: build(config, nnx.Rngs(0)))
  graphdefs, params, buffers = _split(abstract_modules)
  param_shardings = {k: parallel.state_shardings(v, mesh, rules) for k, v in params.items()}
  buffer_shardings = {k: parallel.state_shardings(v, mesh, rules) for k, v in buffers.items()}
  param_axes = {k: parallel.logical_axes(v) for k, v in params.items()}
  pure_params = {k: nnx.to_pure_dict(v) for k, v in params.items()}
  pure_buffers = {k: nnx.to_pure_dict(v) for k, v in buffers.items()}
  frozen, frozen_shardings = {}, {}
  if config.train.lora_rank > 0:
    frozen, frozen_shardings = pure_params, param_shardings
    adapters, adapter_shardings = lora.abstract_adapters(
        pure_params["dit"], param_axes["dit"], config.train.lora_rank, mesh, rules)
    pure_params, param_shardings = {"dit": adapters}, {"dit": adapter_shardings}
    tx = optim.build_optimizer(config.train, jax.tree.map(lambda _: True, pure_params))
  else:
    tx = make_optimizer(config, pure_params, param_axes)
  abstract_opt = jax.eval_shape(tx.init, pure_params)
  replicated = NamedSharding(mesh, PartitionSpec())
  opt_shardings = optax.tree_map_params(tx, lambda _, s: s, abstract_opt, param_shardings,
                                        transform_non_params=lambda _: replicated)
  ema = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32), pure_params)
  shapes = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=pure_params,
                      buffers=pure_buffers, opt_state=abstract_opt, ema_params=ema,
                      rng=jax.ShapeDtypeStruct((2,), jnp.uint32), frozen=frozen)
  shardings = TrainState(step=replicated, params=param_shardings, buffers=buffer_shardings,
                         opt_state=opt_shardings, ema_params=param_shardings, rng=replicated,
                         frozen=frozen_shardings)
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          shapes, shardings)
  return StateSpec(graphdefs=graphdefs, abstract=abstract, shardings=shardings,
                   param_axes=param_axes, tx=tx)


def init_state(config: Config, spec: StateSpec,
               build: Callable[[Config, nnx.Rngs], dict[str, nnx.Module]] = build_trainable,
               weights: dict | None = None) -> TrainState:
  """A fresh state from `train.seed`, initialised on device into `spec.shardings`.

  `weights`: {"dit", "heads"} pure-dict params to start from (fine-tuning, `train.init`) instead
  of the random initialisation; with LoRA they become the frozen base weights.
  """

  def init(seed: jax.Array, weights: dict | None) -> TrainState:
    key = jax.random.PRNGKey(seed)
    init_key, run_key = jax.random.split(key)
    _, params, buffers = _split(build(config, nnx.Rngs(init_key)))
    params = {k: nnx.to_pure_dict(v) for k, v in params.items()}
    buffers = {k: nnx.to_pure_dict(v) for k, v in buffers.items()}
    if weights is not None:
      params = jax.tree.map(lambda w, p: w.astype(p.dtype), weights, params)
    frozen = {}
    if config.train.lora_rank > 0:
      frozen = params
      params = {"dit": lora.init_adapters(spec.abstract.params["dit"],
                                          jax.random.fold_in(init_key, 1))}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, buffers=buffers,
                      opt_state=spec.tx.init(params),
                      ema_params=jax.tree.map(lambda p: p.astype(jnp.float32), params),
                      rng=run_key, frozen=frozen)

  return jax.jit(init, out_shardings=spec.shardings)(jnp.asarray(config.train.seed, jnp.uint32),
                                                      weights)


def module_params(state: TrainState, config: Config, ema: bool = False) -> dict:
  """{"dit", "heads"} weights of the modules: the trained params (or their EMA), with LoRA the
  frozen base weights with the adapters merged in."""
  return lora.module_weights(state.ema_params if ema else state.params, state.frozen,
                             config.train)


def parameter_count(tree: Any) -> int:
  """Number of elements in a tree of arrays or ShapeDtypeStructs."""
  return sum(int(x.size) for x in jax.tree.leaves(tree))
