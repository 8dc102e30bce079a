"""Named rematerialisation policies for scanned blocks (config `remat`)."""

from __future__ import annotations

from typing import Callable

import jax

_cp = jax.checkpoint_policies

# name -> policy; "none" means no jax.checkpoint at all (keep every activation).
POLICIES: dict[str, Callable | None] = {
    "none": None,
    "full": _cp.nothing_saveable,
    "dots": _cp.dots_saveable,
    "dots_no_batch": _cp.dots_with_no_batch_dims_saveable,
    "attn_ff_out": _cp.save_only_these_names("attn_out", "cross_out", "ff_hidden"),
    "ff_hidden": _cp.save_only_these_names("ff_hidden"),
}


def maybe_remat(fn: Callable, policy: str, *, prevent_cse: bool = False) -> Callable:
  """Wraps fn in jax.checkpoint with the named policy (CSE prevention is unneeded under scan)."""
  if policy not in POLICIES:
    raise ValueError(f"unknown remat policy {policy!r}; expected one of {sorted(POLICIES)}")
  if policy == "none":
    return fn
  return jax.checkpoint(fn, policy=POLICIES[policy], prevent_cse=prevent_cse)
