"""Stopping training cleanly on Ctrl-C (SIGINT) or SIGTERM (spot / preemptible VMs, schedulers).

The loop asks `StopRequest.requested(step)` once per step, before it dispatches that step; when
it answers yes the loop finishes that step, checkpoints it (`train.checkpoint_on_signal`) and
returns, so the run can be resumed with the same command.

Single process: Python handlers set a flag. Several processes: every host must stop (and save,
a collective) at the same step, so SIGTERM is left to JAX's preemption service (installed by
`jax.distributed.initialize`): a notice on any host is propagated to all, and
`multihost_utils.reached_preemption_sync_point` answers yes on every host at the same step.
Ctrl-C is turned into that same notice. A second Ctrl-C restores Python's default (abort now).

Data workers must not see the terminal's SIGINT (it goes to the whole process group and would
kill them mid-batch, leaking their shared memory): start them under `workers_ignore_interrupts`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import types
from typing import Iterator

import jax
from jax.experimental import multihost_utils

_log = logging.getLogger(__name__)


@contextlib.contextmanager
def workers_ignore_interrupts() -> Iterator[None]:
  """Processes started inside inherit an ignored SIGINT; the parent's handler is restored."""
  previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)


class StopRequest:
  """Catches SIGINT/SIGTERM while active (a context manager) and says when to stop."""

  def __init__(self):
    self._multi_process = jax.process_count() > 1
    self._signal_name: str | None = None
    self._previous: dict[int, object] = {}

  @property
  def signal_name(self) -> str | None:
    """"SIGINT"/"SIGTERM" once one was received in this process, else None."""
    return self._signal_name

  def __enter__(self) -> "StopRequest":
    signals = (signal.SIGINT,) if self._multi_process else (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
      self._previous[signum] = signal.signal(signum, self._on_signal)
    return self

  def __exit__(self, *exc_info) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous.clear()

  def _on_signal(self, signum: int, frame: types.FrameType | None) -> None:
    del frame
    name = signal.Signals(signum).name
    if self._signal_name == "SIGINT" and signum == signal.SIGINT:
      signal.signal(signal.SIGINT, signal.default_int_handler)
      raise KeyboardInterrupt
    self._signal_name = name
    _log.warning("%s received: finishing the steps in flight and %s (Ctrl-C again aborts "
                 "without saving)", name,
                 "stopping on all hosts at the same step" if self._multi_process else "stopping")
    if self._multi_process and signum == signal.SIGINT:
      signal.raise_signal(signal.SIGTERM)  # JAX's preemption service tells every host

  def requested(self, step: int) -> bool:
    """Whether to stop after `step` (call once per step, with increasing steps, on every host)."""
    if self._multi_process:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._signal_name is not None
