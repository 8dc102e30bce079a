"""Orbax checkpoints of the train state, with the data iterator position in the same step.

Layout of `<workdir>/checkpoints/<step>/`: `state/` (the TrainState pytree, OCDBT), `data/`
(grain iterator state, one JSON per process) and `config/` (the resolved config, JSON). Orbax
writes each step to a temporary directory and renames it when complete, so a killed run never
leaves a half-written step behind; saves are asynchronous (device→host copy happens in `save`,
the file writing in the background).

Restoring goes into an abstract, sharded target (ShapeDtypeStructs with `.sharding`), so every
host reads only its shards and a checkpoint written on one mesh shape restores onto another.
"""

from __future__ import annotations

import json
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from aomni_jax.config import Config, to_dict
from aomni_jax.train.state import TrainState


class _IteratorSnapshot:
  """A frozen iterator position: the loop captures it when the batch for this step is taken."""

  def __init__(self, state: Any):
    self._state = state

  def get_state(self) -> bytes:
    # grain's handler writes `get_state().decode()` for objects that are not DatasetIterators.
    return (self._state if isinstance(self._state, bytes)
            else json.dumps(self._state, indent=2).encode())


def make_manager(directory: str, config: Config) -> ocp.CheckpointManager:
  """Keeps the latest `train.keep_checkpoints` steps, saving every `train.checkpoint_every`."""
  options = ocp.CheckpointManagerOptions(
      save_interval_steps=max(config.train.checkpoint_every, 1),
      max_to_keep=config.train.keep_checkpoints,
      enable_async_checkpointing=config.train.async_checkpointing,
      create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_names=("state", "data", "config"))


def save(manager: ocp.CheckpointManager, state: TrainState, config: Config,
         iterator_state: Any | None, *, force: bool = False) -> bool:
  """Saves if this step is due (or `force`); `iterator_state` is `iterator.get_state()` taken
  right after the batch of this step was drawn. Returns whether a save was started."""
  step = int(jax.device_get(state.step))
  items = {"state": ocp.args.StandardSave(state), "config": ocp.args.JsonSave(to_dict(config))}
  if iterator_state is not None:
    items["data"] = grain.checkpoint.CheckpointSave(_IteratorSnapshot(iterator_state))
  return manager.save(step, args=ocp.args.Composite(**items), force=force)


def restore(manager: ocp.CheckpointManager, abstract_state: TrainState,
            iterator: Any | None = None, step: int | None = None) -> TrainState:
  """Restores `step` (default: latest) into the shardings of `abstract_state`; sets the iterator
  position too when one is given and the checkpoint has it."""
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {manager.directory}")
  items = {"state": ocp.args.StandardRestore(abstract_state)}
  has_data = (manager.directory / str(step) / "data").exists()
  if iterator is not None and has_data:
    items["data"] = grain.checkpoint.CheckpointRestore(iterator)
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  return restored["state"]
