"""The optimiser: global-norm clipping, then AdamW with a weight-decay mask, warmup + cosine."""

from __future__ import annotations

from typing import Any

import jax
import optax

from aomni_jax.config import TrainConfig

# Leaf names that never get weight decay, whatever their shape.
_NO_DECAY_NAMES = ("bias", "scale", "gamma", "beta", "alpha")


def learning_rate_schedule(cfg: TrainConfig) -> optax.Schedule:
  """Linear warmup to `learning_rate`, then cosine decay to `min_lr_ratio` of it at num_steps.

  Update n (from 0) uses the value at n + 1, so the first update is not wasted at rate 0.
  """
  warmup = min(cfg.warmup_steps, max(cfg.num_steps - 1, 0))
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=warmup,
      decay_steps=max(cfg.num_steps, warmup + 1), end_value=cfg.learning_rate * cfg.min_lr_ratio)
  return lambda count: schedule(count + 1)


def _decays(path: tuple, shape: tuple[int, ...], axes: tuple[str | None, ...] | None) -> bool:
  names = [str(getattr(k, "key", getattr(k, "name", k))).lower() for k in path]
  if (names and names[-1] in _NO_DECAY_NAMES) or any("norm" in n for n in names):
    return False
  # The stacked `layers` axis of scanned blocks does not count: a scanned norm is still 1-D.
  dims = [d for i, d in enumerate(shape) if not (axes and axes[i] == "layers")]
  return sum(d > 1 for d in dims) >= 2


def weight_decay_mask(params: Any, axes: Any) -> Any:
  """True where AdamW decays: matrices and kernels, not norms, biases or vectors."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  flat_axes = jax.tree.leaves(axes, is_leaf=lambda x: hasattr(x, "axes"))
  leaves = [_decays(path, tuple(x.shape), a.axes) for (path, x), a in zip(flat, flat_axes,
                                                                           strict=True)]
  return jax.tree.unflatten(jax.tree.structure(params), leaves)


def clip_each_module(max_norm: float) -> optax.GradientTransformation:
  """Global-norm clipping of each top-level entry of {module name: subtree} on its own, so that
  players with separate objectives (a generator and its discriminator) do not clip each other."""
  clip = optax.clip_by_global_norm(max_norm)

  def update(updates, state, params=None):
    del params
    return {name: clip.update(tree, optax.EmptyState())[0] for name, tree in updates.items()}, state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def build_optimizer(cfg: TrainConfig, decay_mask: Any,
                    clip: optax.GradientTransformation | None = None
                    ) -> optax.GradientTransformation:
  """`clip` (default: global-norm clipping at `grad_clip_norm`), then masked AdamW."""
  return optax.chain(
      clip or optax.clip_by_global_norm(cfg.grad_clip_norm),
      optax.adamw(learning_rate_schedule(cfg), b1=cfg.adam_b1, b2=cfg.adam_b2, eps=cfg.adam_eps,
                  weight_decay=cfg.weight_decay, mask=decay_mask))

