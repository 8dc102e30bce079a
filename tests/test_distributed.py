"""Multi-process start-up: where the process group comes from, and that a failed start-up is loud.

A real failure runs in a subprocess (JAX can start its distributed runtime once per process):
process 0 of 2 whose coordinator port is taken must raise, not train alone.
"""

import os
import socket
import subprocess
import sys

import jax
import pytest

from aomni_jax import parallel
from aomni_jax.config import ConfigError, MeshConfig

LAUNCHER_ENV = {"JAX_COORDINATOR_ADDRESS": "10.0.0.2:1234", "JAX_NUM_PROCESSES": "4",
                "JAX_PROCESS_ID": "3"}


@pytest.fixture(autouse=True)
def _no_launcher_env(monkeypatch):
  for name in LAUNCHER_ENV:
    monkeypatch.delenv(name, raising=False)


def test_the_launchers_environment_names_the_group():
  group = parallel.requested_process_group(MeshConfig(), LAUNCHER_ENV)
  assert (group.coordinator_address, group.num_processes, group.process_id) == (
      "10.0.0.2:1234", 4, 3)
  assert parallel.requested_process_group(MeshConfig(), {}) is None
  # An address alone is jax's own input for auto-detection (e.g. SLURM with a chosen port).
  assert parallel.requested_process_group(
      MeshConfig(), {"JAX_COORDINATOR_ADDRESS": "h:1"}) is None


def test_the_config_wins_over_the_environment():
  cfg = MeshConfig(coordinator_address="h0:99", num_processes=2, process_id=1)
  group = parallel.requested_process_group(cfg, LAUNCHER_ENV)
  assert (group.coordinator_address, group.num_processes, group.process_id, group.source) == (
      "h0:99", 2, 1, "mesh config")


@pytest.mark.parametrize("env, message", [
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "incomplete multi-process environment"),
    ({**LAUNCHER_ENV, "JAX_PROCESS_ID": "x"}, "incomplete multi-process environment"),
    ({**LAUNCHER_ENV, "JAX_PROCESS_ID": "4"}, r"JAX_PROCESS_ID=4 must be in 0..3"),
])
def test_half_a_group_is_an_error(env, message):
  with pytest.raises(ConfigError, match=message):
    parallel.requested_process_group(MeshConfig(), env)
  with pytest.raises(ConfigError, match="mesh.process_id"):
    parallel.requested_process_group(MeshConfig(coordinator_address="h:1", num_processes=2,
                                                 process_id=2), {})


def _never_start(**kwargs):
  pytest.fail(f"jax.distributed.initialize was called with {kwargs}")


def test_single_process_opt_out_skips_start_up_but_not_a_requested_group(monkeypatch):
  monkeypatch.setattr(jax.distributed, "initialize", _never_start)
  assert parallel.initialize_distributed(MeshConfig(single_process=True)) is False
  for name, value in LAUNCHER_ENV.items():
    monkeypatch.setenv(name, value)
  with pytest.raises(ConfigError, match="asks for 4 processes"):
    parallel.initialize_distributed(MeshConfig(single_process=True))


def test_a_group_of_one_needs_no_start_up(monkeypatch):
  monkeypatch.setattr(jax.distributed, "initialize", _never_start)
  cfg = MeshConfig(coordinator_address="h:1", num_processes=1, process_id=0)
  assert parallel.initialize_distributed(cfg) is False


def test_a_requested_group_after_jax_started_raises(monkeypatch):
  monkeypatch.setattr(jax.distributed, "initialize", _never_start)
  jax.devices()  # the backend is up: too late to join
  cfg = MeshConfig(coordinator_address="h:1", num_processes=2, process_id=1)
  with pytest.raises(parallel.DistributedStartupError, match="before any JAX call"):
    parallel.initialize_distributed(cfg)


@pytest.mark.parametrize("error, expected", [
    (RuntimeError("DEADLINE_EXCEEDED: Barrier timed out"), parallel.DistributedStartupError),
    (ValueError("coordinator_address should be defined."), None),
])
def test_auto_detection_failures_raise_and_no_cluster_is_single_process(monkeypatch, error,
                                                                        expected):
  def start(**kwargs):
    raise error
  monkeypatch.setattr(jax.distributed, "initialize", start)
  monkeypatch.setattr(parallel, "_backend_started", lambda: False)
  if expected is None:
    assert parallel.initialize_distributed(MeshConfig()) is False
  else:
    with pytest.raises(expected, match="detected a cluster but could not join it.*Barrier"):
      parallel.initialize_distributed(MeshConfig())


CHILD = """
from aomni_jax import parallel
from aomni_jax.config import MeshConfig
try:
  parallel.initialize_distributed(MeshConfig(init_timeout_s=5))
except parallel.DistributedStartupError as err:
  print("raised:", err, flush=True)
else:
  print("continued single-process", flush=True)
"""


def _start_with_a_taken_port() -> tuple[int, subprocess.CompletedProcess]:
  with socket.socket(socket.AF_INET6) as taken:  # bound, not listening: connections fail fast
    taken.bind(("::", 0))
    port = taken.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.getcwd(),
           "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
           "JAX_PROCESS_ID": "0"}
    env.pop("XLA_FLAGS", None)
    return port, subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                                text=True, timeout=120)


def test_a_real_failed_start_up_raises_with_the_reason():
  """Process 0 checks its coordinator port before jaxlib binds it (jaxlib can SIGSEGV on a taken
  port before Python sees an error), so the failure is always our one line, never a crash."""
  port, result = _start_with_a_taken_port()
  assert "continued single-process" not in result.stdout
  assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
  assert result.stdout.startswith("raised: multi-process start-up failed: process 0 of 2 (from the "
                                  f"environment) could not start or join the coordinator at "
                                  f"127.0.0.1:{port}"), result.stdout
  assert f"port {port} is already in use" in result.stdout
