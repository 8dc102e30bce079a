"""Multi-process GPU launch: the environment each JAX process needs, and a local spawner.

JAX runs one process per host (it drives all local GPUs) or one per GPU. Either way every process
calls `jax.distributed.initialize` with the same coordinator (process 0's host:port), the process
count and its own id; this module hands those over as environment variables:
`JAX_COORDINATOR_ADDRESS` and `JAX_LOCAL_DEVICE_IDS` (which jax reads itself) and
`JAX_NUM_PROCESSES` / `JAX_PROCESS_ID`, which `aomni_jax.parallel.initialize_distributed` reads
and passes to it (every aomni command that starts JAX calls it first), so the job needs no flags.
Under SLURM or Open MPI none of this is needed: jax detects those launchers on its own.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Mapping, Sequence

from aomni_jax.cli.errors import UserError

MODES = ("host", "gpu")  # one process per host, or one per GPU

# Always set: NVLink multicast (NVLS) stays off in NCCL, NVSHMEM and PyTorch. On shared GPU hosts
# a program that uses it can take the host's GPUs out of service; the speed it buys is small.
FORCED_ENV = {"NCCL_NVLS_ENABLE": "0", "NVSHMEM_DISABLE_NVLS": "1",
              "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1"}
# Set unless the caller's environment already has them.
DEFAULT_ENV = {
    "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.90",  # jax's 0.75 default wastes HBM a trainer needs
    "NCCL_DEBUG": "WARN",
}

_HOST_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9.]{0,251}[A-Za-z0-9])?")


class GpuLaunchError(UserError, ValueError):
  """An inconsistent node/process description."""


@dataclasses.dataclass(frozen=True)
class GpuJob:
  """This node's part of a multi-node job."""

  nnodes: int
  node_rank: int
  gpus_per_node: int
  coordinator: str | None = None  # host:port of process 0 (on node 0)
  mode: str = "host"

  def __post_init__(self):
    if self.mode not in MODES:
      raise GpuLaunchError(f"--mode {self.mode!r}; expected one of {MODES}")
    if self.nnodes < 1:
      raise GpuLaunchError(f"NNODES must be >= 1, got {self.nnodes}")
    if not 0 <= self.node_rank < self.nnodes:
      raise GpuLaunchError(f"NODE_RANK={self.node_rank} must be in 0..{self.nnodes - 1} "
                           f"(NNODES={self.nnodes})")
    if self.gpus_per_node < 1:
      raise GpuLaunchError(f"GPUS_PER_NODE must be >= 1, got {self.gpus_per_node}")
    if self.num_processes > 1:
      self._check_coordinator()

  def _check_coordinator(self):
    if not self.coordinator:
      raise GpuLaunchError(f"{self.num_processes} processes need a coordinator: pass "
                           f"--coordinator host:port (node 0's address) or set "
                           f"JAX_COORDINATOR_ADDRESS")
    host, sep, port = self.coordinator.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
      raise GpuLaunchError(f"coordinator {self.coordinator!r}: expected host:port with a port "
                           f"in 1-65535, e.g. 10.0.0.2:1234")
    if not _is_host(host):
      raise GpuLaunchError(f"coordinator host {host!r} is neither an IP address nor a hostname")
    if self.nnodes > 1 and _is_loopback(host):
      raise GpuLaunchError(f"coordinator {self.coordinator!r} is a loopback address, which the "
                           f"other {self.nnodes - 1} node(s) cannot reach; use node 0's address")

  @property
  def processes_per_node(self) -> int:
    return self.gpus_per_node if self.mode == "gpu" else 1

  @property
  def num_processes(self) -> int:
    return self.nnodes * self.processes_per_node


def _is_host(host: str) -> bool:
  try:
    ipaddress.ip_address(host)
    return True
  except ValueError:
    return bool(_HOST_RE.fullmatch(host))


def _is_loopback(host: str) -> bool:
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False


def local_coordinator() -> str:
  """A free port on this host, for the processes of a one-node job to meet at."""
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return f"127.0.0.1:{probe.getsockname()[1]}"


def process_environments(job: GpuJob, base: Mapping[str, str] | None = None
                         ) -> list[dict[str, str]]:
  """The added environment of each process this node starts (local rank order)."""
  base = os.environ if base is None else base
  shared = {k: v for k, v in DEFAULT_ENV.items() if k not in base}
  shared.update(FORCED_ENV)
  shared.update(NNODES=str(job.nnodes), NODE_RANK=str(job.node_rank),
                GPUS_PER_NODE=str(job.gpus_per_node))
  all_gpus = ",".join(str(i) for i in range(job.gpus_per_node))
  if job.num_processes == 1:
    return [shared]  # one process on one host: nothing distributed to set up
  envs = []
  for local_rank in range(job.processes_per_node):
    env = dict(shared)
    env.update(JAX_COORDINATOR_ADDRESS=job.coordinator,
               JAX_NUM_PROCESSES=str(job.num_processes),
               JAX_PROCESS_ID=str(job.node_rank * job.processes_per_node + local_rank),
               JAX_LOCAL_DEVICE_IDS=str(local_rank) if job.mode == "gpu" else all_gpus,
               LOCAL_RANK=str(local_rank))
    envs.append(env)
  return envs


def detect_gpu_count() -> int | None:
  """GPUs nvidia-smi lists on this host, or None without nvidia-smi."""
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return None
  return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def spawn(plan: Sequence[tuple[Mapping[str, str], Sequence[str]]], poll_s: float = 0.5,
          stop_timeout_s: float = 300.0) -> int:
  """Starts every (added environment, argv) process and waits; a failure or a stop ends them all.

  A crashed process would leave its peers blocked in a collective forever, so the launcher ends
  them (only the processes it started, by handle) and returns the failing exit code. SIGTERM to
  the launcher (a scheduler's preemption, `kill`) and Ctrl-C are passed on as SIGTERM, and the
  processes get `stop_timeout_s` to checkpoint and exit before SIGKILL; the launcher then returns
  their first non-zero exit code, or 0 when all stopped cleanly.
  """
  procs = [subprocess.Popen(list(argv), env={**os.environ, **env}) for env, argv in plan]
  stop_requests: list[int] = []
  previous = signal.signal(signal.SIGTERM, lambda signum, _: stop_requests.append(signum))
  failed: list[int] = []
  try:
    while not stop_requests:
      codes = [p.poll() for p in procs]
      failed = [c for c in codes if c not in (None, 0)]
      if failed or all(c == 0 for c in codes):
        break
      time.sleep(poll_s)
  except KeyboardInterrupt:
    stop_requests.append(signal.SIGINT)
  finally:
    signal.signal(signal.SIGTERM, previous)
  running = [p for p in procs if p.poll() is None]
  if stop_requests and running:
    print(f"launch: {signal.Signals(stop_requests[0]).name}: stopping {len(running)} "
          f"process(es), up to {stop_timeout_s:.0f}s for them to save and exit", file=sys.stderr)
  for p in running:
    p.terminate()
  for p in running:
    try:
      p.wait(timeout=stop_timeout_s if stop_requests else 30)
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()
  if stop_requests:
    return next((p.returncode for p in procs if p.returncode != 0), 0)
  if failed:
    print(f"launch: a process exited with {failed[0]}; stopped the others", file=sys.stderr)
    return failed[0]
  return 0
