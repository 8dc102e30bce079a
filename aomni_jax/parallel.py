"""Device mesh, logical→mesh sharding, multi-host start-up and the replication guard.

This is the only module that knows mesh axis names. Model code tags parameters with logical names
(`embed`, `mlp`, `heads`, `layers`, ...); `MeshConfig.rules` maps each logical name to mesh axes.
Resolution follows MaxText's convention: a mesh axis is used at most once per array (the first
logical dimension that asks for it wins), and a mesh axis that does not divide the dimension is
dropped for that dimension, so a tiny model still shards cleanly on a large mesh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import math
import os
import socket
from typing import Any, ContextManager, Mapping

import jax
from jax.experimental import mesh_utils
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from aomni_jax.cli.errors import UserError
from aomni_jax.config import ConfigError, MeshConfig

MESH_AXES = ("data", "fsdp", "tensor")
# Logical name of the batch dimension of every input array.
BATCH_AXIS = "batch"

_log = logging.getLogger(__name__)
_warned_unknown: set[str] = set()


# The launchers' hand-over (`aomni-launch gpu` sets all three); jax itself reads only the address.
ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


class DistributedStartupError(UserError):
  """The multi-process runtime was asked for (or detected) but could not start."""


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
  """Where this process belongs: the coordinator (process 0's host:port), the count and its id."""

  coordinator_address: str
  num_processes: int
  process_id: int
  source: str  # where the values came from, for error messages


def requested_process_group(cfg: MeshConfig, environ: Mapping[str, str] | None = None
                            ) -> ProcessGroup | None:
  """The process group the config or a launcher asks for; None leaves detection to JAX.

  The config wins over the environment. Half a description (an address without a count, a
  count without an address) is an error: guessing would start independent single-process jobs.
  """
  environ = os.environ if environ is None else environ
  if cfg.coordinator_address:
    if cfg.num_processes < 1 or not 0 <= cfg.process_id < cfg.num_processes:
      raise ConfigError("mesh.coordinator_address is set, so mesh.num_processes (>= 1) and "
                        "mesh.process_id (0..num_processes-1) must be too; got "
                        f"{cfg.num_processes}, {cfg.process_id}")
    return ProcessGroup(cfg.coordinator_address, cfg.num_processes, cfg.process_id, "mesh config")
  names = (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID)
  values = [environ.get(name, "") for name in names]
  if not any(values[1:]):
    return None  # an address alone is jax's own auto-detection input (e.g. SLURM + address)
  if not all(values) or not values[1].isdigit() or not values[2].isdigit():
    given = ", ".join(f"{n}={v!r}" for n, v in zip(names, values))
    raise ConfigError(f"incomplete multi-process environment ({given}): set all three "
                      f"(aomni-launch gpu does) or none")
  group = ProcessGroup(values[0], int(values[1]), int(values[2]), "environment")
  if not 0 <= group.process_id < group.num_processes:
    raise ConfigError(f"{ENV_PROCESS_ID}={group.process_id} must be in 0..{group.num_processes - 1}"
                      f" ({ENV_NUM_PROCESSES}={group.num_processes})")
  return group


def _first_line(err: BaseException) -> str:
  text = str(err).strip()
  return text.splitlines()[0] if text else type(err).__name__


# Cheap signs (environment only, no metadata-server query) that this host belongs to a cluster.
_CLUSTER_HINTS = (ENV_COORDINATOR, "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES",
                  "MEGASCALE_COORDINATOR_ADDRESS")


def _cluster_hints() -> list[str]:
  return [name for name in _CLUSTER_HINTS if os.environ.get(name)]


def _backend_started() -> bool:
  # Private, but the only way to tell "too late to join a cluster" from a failed start-up.
  from jax._src import xla_bridge
  return xla_bridge.backends_are_initialized()


def _port_in_use(address: str) -> str | None:
  """Why process 0 cannot host the coordinator on `address`'s port, or None if it can.

  jaxlib binds `[::]:port` for the coordinator service and, on a taken port, can crash in C++
  (SIGSEGV) before Python sees an error; binding first turns that into our one-line message.
  """
  port = int(address.rsplit(":", 1)[-1])
  for family, host in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
    try:
      with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
      return None
    except OSError as err:
      if err.errno == errno.EADDRINUSE:
        return f"port {port} is already in use on this host"
  return None  # no socket family could be probed: let jax report what it finds


def _startup_failure(group: ProcessGroup | None, cfg: MeshConfig,
                     reason: str) -> DistributedStartupError:
  where = (f"process {group.process_id} of {group.num_processes} (from the {group.source}) "
           f"could not start or join the coordinator at {group.coordinator_address}" if group else
           "JAX detected a cluster but could not join it")
  return DistributedStartupError(
      f"multi-process start-up failed: {where} within {cfg.init_timeout_s}s: {reason}. "
      "Start every process (all hosts at once), check the coordinator is reachable and its port "
      "open; set mesh.single_process=True only for a deliberately single-process run")


def initialize_distributed(cfg: MeshConfig) -> bool:
  """Starts the multi-process JAX runtime when there is more than one process; call it first.

  The process group comes from the config, else from the launcher's environment
  (`JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`), else JAX auto-detects Cloud
  TPU / SLURM / Open MPI / Kubernetes. A plain host is single-process. A start-up that was asked
  for or detected and fails raises `DistributedStartupError`: falling back would train as many
  independent jobs. `mesh.single_process` skips start-up, for single-process runs only.
  Returns whether the runtime is distributed.
  """
  if jax.distributed.is_initialized():
    return True
  group = requested_process_group(cfg)
  if cfg.single_process:
    if group is not None and group.num_processes > 1:
      raise ConfigError(f"mesh.single_process is set, but the {group.source} asks for "
                        f"{group.num_processes} processes; unset one of them")
    return False
  if group is not None and group.num_processes == 1:
    return False
  if _backend_started():
    if group is not None:
      raise DistributedStartupError(
          f"JAX computed before its multi-process start-up (process {group.process_id} of "
          f"{group.num_processes}); call parallel.initialize_distributed before any JAX call")
    # In-process callers (a notebook, a test, a second command) get here routinely: a note, not a
    # warning, unless the host looks like part of a cluster that auto-detection would have joined.
    hints = _cluster_hints()
    if hints:
      _log.warning("JAX already running: not looking for a multi-process cluster, although %s "
                   "is set; call parallel.initialize_distributed before any JAX call",
                   ", ".join(hints))
    else:
      _log.debug("JAX already running: not looking for a multi-process cluster")
    return False
  kwargs: dict[str, Any] = {"initialization_timeout": cfg.init_timeout_s}
  if group is not None:
    kwargs.update(coordinator_address=group.coordinator_address,
                  num_processes=group.num_processes, process_id=group.process_id)
  if group is not None and group.process_id == 0 and (taken := _port_in_use(
      group.coordinator_address)):
    raise _startup_failure(group, cfg, taken)
  try:
    jax.distributed.initialize(**kwargs)
  except ValueError as err:  # jax found no cluster, or rejected what it was given
    if group is not None or os.environ.get(ENV_COORDINATOR):
      raise DistributedStartupError(f"multi-process start-up rejected its parameters: "
                                    f"{_first_line(err)}") from err
    # The normal case on one host: debug only, so a command's output (and its one-line errors)
    # is not preceded by a start-up note.
    _log.debug("single-process run: no cluster detected (%s)", err)
    return False
  except Exception as err:  # coordinator unreachable, timeout, peers missing
    raise _startup_failure(group, cfg, _first_line(err)) from err
  return True


def wait_for_all_processes(name: str, timeout_s: int) -> None:
  """Blocks until every process reaches `name` (the coordination service's barrier, no device
  work). Called after compiling, so that one host's slower compile is not spent inside the first
  collective, whose own timeout can be short (30 s for CPU collectives over gloo)."""
  if jax.process_count() == 1:
    return
  from orbax.checkpoint import multihost  # pylint: disable=g-import-not-at-top
  multihost.get_barrier_sync_fn()(key=name, timeout_ms=timeout_s * 1000)


def mesh_shape(cfg: MeshConfig, num_devices: int) -> tuple[int, ...]:
  """Axis sizes (data, fsdp, tensor) with one -1 filled from the device count."""
  sizes = [cfg.data, cfg.fsdp, cfg.tensor]
  unknown = [i for i, s in enumerate(sizes) if s == -1]
  if len(unknown) > 1 or any(s == 0 or s < -1 for s in sizes):
    raise ConfigError(f"mesh (data, fsdp, tensor) = {tuple(sizes)}: use positive sizes and at "
                      "most one -1")
  known = math.prod(s for s in sizes if s != -1)
  if unknown:
    if num_devices % known:
      raise ConfigError(f"mesh {tuple(sizes)}: {num_devices} devices are not divisible by {known}")
    sizes[unknown[0]] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ConfigError(f"mesh (data, fsdp, tensor) = {tuple(sizes)} needs {math.prod(sizes)} "
                      f"devices, but {num_devices} are available")
  return tuple(sizes)


def detected_num_slices(devices: list[jax.Device] | None = None) -> int:
  """How many TPU slices the run spans: `MEGASCALE_NUM_SLICES` (exported by the multislice
  launcher on every host) or else the distinct `slice_index` values of the devices; 1 elsewhere."""
  env = os.environ.get("MEGASCALE_NUM_SLICES", "").strip()
  if env:
    if not env.isdigit() or int(env) < 1:
      raise ConfigError(f"MEGASCALE_NUM_SLICES={env!r} is not a positive integer; unset it for "
                        "a single-slice run")
    return int(env)
  devices = devices if devices is not None else jax.devices()
  indices = {getattr(d, "slice_index", None) for d in devices}
  return 1 if None in indices else len(indices)


def _hybrid_grid(ici: tuple[int, ...], dcn: tuple[int, ...], devices: list[jax.Device]):
  """Device grid whose `dcn` factors span slices. Devices without a `slice_index` (CPU, GPU)
  count as slices of consecutive devices, so the multislice layout can be tested anywhere."""
  if all(hasattr(d, "slice_index") for d in devices):
    return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices)
  num_slices = math.prod(dcn)
  per_slice = np.asarray(devices, dtype=object).reshape((num_slices,) + ici)
  axis = next(i for i, d in enumerate(dcn) if d > 1)
  return np.concatenate(list(per_slice), axis=axis)


def make_mesh(cfg: MeshConfig, devices: list[jax.Device] | None = None,
              num_slices: int = 1) -> Mesh:
  """The (data, fsdp, tensor) mesh over all (or the given) devices, in auto-sharding mode.

  Across several TPU slices the data axis spans the slices (DCN); fsdp and tensor stay inside a
  slice (ICI), where their collectives are cheap.
  """
  devices = list(devices if devices is not None else jax.devices())
  shape = mesh_shape(cfg, len(devices))
  axis_types = (AxisType.Auto,) * len(MESH_AXES)
  if num_slices == 1:
    return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types, devices=devices)
  data_axis = MESH_AXES.index("data")
  if shape[data_axis] % num_slices:
    raise ConfigError(f"mesh.data={shape[data_axis]} must be a multiple of the {num_slices} "
                      "slices: the data axis is the one that spans slices")
  dcn = tuple(num_slices if i == data_axis else 1 for i in range(len(shape)))
  ici = tuple(s // d for s, d in zip(shape, dcn))
  return Mesh(_hybrid_grid(ici, dcn, devices), MESH_AXES, axis_types=axis_types)


def mesh_context(mesh: Mesh | None) -> ContextManager[None]:
  """Makes `mesh` the current mesh (`jax.set_mesh`) for the code traced and run inside.

  Kernels that are not partitioned by GSPMD (splash) read it to wrap themselves in `shard_map`,
  and `attention="auto"` reads its device platform, so the train step, the sampler and inference
  must trace under it. None (single device, no mesh) is a no-op.
  """
  return contextlib.nullcontext() if mesh is None else jax.set_mesh(mesh)


def _rule_table(rules: tuple[tuple[str, Any], ...]) -> dict[str, tuple[str, ...]]:
  table = {}
  for name, target in rules:
    if target is None:
      table[name] = ()
    elif isinstance(target, str):
      table[name] = (target,)
    else:
      table[name] = tuple(target)
    unknown = [a for a in table[name] if a not in MESH_AXES]
    if unknown:
      raise ConfigError(f"mesh rule {name!r} -> {target!r} names unknown mesh axes {unknown}; "
                        f"expected axes from {MESH_AXES}")
  return table


def logical_to_spec(axes: tuple[str | None, ...] | None, shape: tuple[int, ...], mesh: Mesh,
                    rules: tuple[tuple[str, Any], ...]) -> PartitionSpec:
  """Resolves logical axis names of one array to a PartitionSpec on `mesh`."""
  if not axes:
    return PartitionSpec()
  if len(axes) != len(shape):
    raise ValueError(f"logical axes {axes} do not match shape {shape}")
  table = _rule_table(rules)
  used: set[str] = set()
  spec = []
  for name, dim in zip(axes, shape):
    if name is None:
      spec.append(None)
      continue
    if name not in table:
      if name not in _warned_unknown:
        _warned_unknown.add(name)
        _log.warning("logical axis %r has no mesh rule; replicating it (add it to mesh.rules)",
                     name)
      spec.append(None)
      continue
    chosen = []
    size = 1
    for mesh_axis in table[name]:
      axis_size = mesh.shape[mesh_axis]
      if mesh_axis in used or axis_size == 1 or dim % (size * axis_size):
        continue
      chosen.append(mesh_axis)
      size *= axis_size
    used.update(chosen)
    spec.append(tuple(chosen) if len(chosen) > 1 else (chosen[0] if chosen else None))
  return PartitionSpec(*spec)


def logical_axes(state: nnx.State) -> dict:
  """The `out_sharding` logical names of every Variable, as a pure dict shaped like the state."""
  tagged = jax.tree.map(lambda v: _Axes(v.get_metadata().get("out_sharding")), state,
                        is_leaf=lambda x: isinstance(x, nnx.Variable))
  return nnx.to_pure_dict(tagged)


class _Axes:
  """Wraps a tuple so that tree utilities treat it as one leaf."""

  def __init__(self, axes):
    self.axes = tuple(axes) if axes else None


def state_shardings(state: nnx.State, mesh: Mesh,
                    rules: tuple[tuple[str, Any], ...]) -> dict:
  """NamedShardings (pure dict) for an (abstract) nnx.State from its logical axis metadata."""
  axes = logical_axes(state)
  shapes = nnx.to_pure_dict(state)
  return jax.tree.map(
      lambda a, x: NamedSharding(mesh, logical_to_spec(a.axes, tuple(x.shape), mesh, rules)),
      axes, shapes, is_leaf=lambda x: isinstance(x, _Axes))


def batch_sharding(mesh: Mesh, rules: tuple[tuple[str, Any], ...], ndim: int,
                   batch_size: int) -> NamedSharding:
  """Leading (batch) axis over the batch rule's mesh axes; the other axes replicated.

  Raises when the batch does not divide those axes: silently replicating the batch would run
  every sample on every data-parallel device.
  """
  axes = [a for a in _rule_table(rules).get(BATCH_AXIS, ()) if mesh.shape[a] > 1]
  ways = math.prod(mesh.shape[a] for a in axes)
  if batch_size % ways:
    sizes = " x ".join(f"{a}={mesh.shape[a]}" for a in axes)
    raise ConfigError(f"a batch of {batch_size} does not divide the batch axes of mesh "
                      f"{dict(mesh.shape)} ({sizes} = {ways}); use a batch size that is a "
                      f"multiple of {ways} (per micro-batch) or change mesh.data/mesh.fsdp")
  spec = logical_to_spec((BATCH_AXIS,) + (None,) * (ndim - 1), (batch_size,) + (1,) * (ndim - 1),
                         mesh, rules)
  return NamedSharding(mesh, spec)


def batch_shardings(batch: Mapping[str, Any], mesh: Mesh,
                    rules: tuple[tuple[str, Any], ...]) -> dict:
  """A sharding per batch entry (arrays or ShapeDtypeStructs with a leading batch axis)."""
  return jax.tree.map(lambda x: batch_sharding(mesh, rules, len(x.shape), x.shape[0]), batch)


def shard_batch(batch: Mapping[str, np.ndarray], shardings: Mapping[str, NamedSharding]) -> dict:
  """Host-local numpy batch → global jax.Arrays (each process passes its own slice of the batch)."""
  return jax.tree.map(lambda x, s: jax.make_array_from_process_local_data(s, np.asarray(x)),
                      dict(batch), dict(shardings))


def replicated_fraction(shapes: Any, shardings: Any) -> tuple[float, list[tuple[str, int]]]:
  """Fraction of bytes stored fully replicated, and the largest replicated arrays (path, bytes)."""
  total = 0
  replicated = []
  flat_shapes = jax.tree_util.tree_flatten_with_path(shapes)[0]
  flat_shardings = jax.tree.leaves(shardings)
  for (path, x), sharding in zip(flat_shapes, flat_shardings, strict=True):
    nbytes = math.prod(x.shape) * np.dtype(x.dtype).itemsize
    total += nbytes
    if sharding.is_fully_replicated and sharding.num_devices > 1:
      replicated.append((jax.tree_util.keystr(path), nbytes))
  replicated.sort(key=lambda item: -item[1])
  fraction = sum(b for _, b in replicated) / total if total else 0.0
  return fraction, replicated


def check_replication(shapes: Any, shardings: Any, tolerance: float) -> float:
  """Raises when more than `tolerance` of parameter bytes are replicated on a multi-device mesh."""
  fraction, replicated = replicated_fraction(shapes, shardings)
  if fraction > tolerance:
    top = ", ".join(f"{p} ({b / 2**10:,.1f} KiB)" for p, b in replicated[:8])
    raise ConfigError(f"{fraction:.1%} of parameter bytes are replicated (tolerance "
                      f"{tolerance:.1%}; mesh.replication_tolerance). Largest: {top}. Check "
                      "mesh.rules and the logical axis names of these parameters.")
  return fraction
