"""Multi-process GPU launch: per-process environment, validation, and the local spawner."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from aomni_jax.cli import launch as cli
from aomni_jax.launch import gpu


def plan(*argv):
  return cli.gpu_plan(cli.build_parser().parse_args(["gpu", *argv]))


@pytest.fixture(autouse=True)
def _no_launch_env(monkeypatch):
  for key in ("NNODES", "NODE_RANK", "GPUS_PER_NODE", "JAX_COORDINATOR_ADDRESS",
              "XLA_PYTHON_CLIENT_MEM_FRACTION", "NCCL_DEBUG"):
    monkeypatch.delenv(key, raising=False)


def test_one_process_per_gpu_on_the_second_node():
  processes = plan("--nnodes", "2", "--node-rank", "1", "--gpus-per-node", "4",
                   "--coordinator", "10.0.0.2:1234", "--mode", "gpu", "--",
                   "aomni-train", "--set", "mesh.process_id={process_id}")
  assert len(processes) == 4
  for local_rank, (env, argv) in enumerate(processes):
    assert env["JAX_COORDINATOR_ADDRESS"] == "10.0.0.2:1234"
    assert env["JAX_NUM_PROCESSES"] == "8"
    assert env["JAX_PROCESS_ID"] == str(4 + local_rank)
    assert env["JAX_LOCAL_DEVICE_IDS"] == str(local_rank)
    assert env["NCCL_NVLS_ENABLE"] == "0"
    assert argv == ["aomni-train", "--set", f"mesh.process_id={4 + local_rank}"]


def test_one_process_per_host_sees_all_local_gpus(monkeypatch):
  monkeypatch.setenv("NNODES", "3")
  monkeypatch.setenv("NODE_RANK", "2")
  monkeypatch.setenv("GPUS_PER_NODE", "8")
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "node0.cluster:5000")
  [(env, argv)] = plan("--", "python", "-m", "x")
  assert (env["JAX_NUM_PROCESSES"], env["JAX_PROCESS_ID"]) == ("3", "2")
  assert env["JAX_LOCAL_DEVICE_IDS"] == "0,1,2,3,4,5,6,7"
  assert argv == ["python", "-m", "x"]


def test_single_host_needs_no_distributed_setup():
  [(env, _)] = plan("--gpus-per-node", "8", "--", "aomni-train")
  assert "JAX_COORDINATOR_ADDRESS" not in env and "JAX_PROCESS_ID" not in env
  assert env["NCCL_NVLS_ENABLE"] == "0" and env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.90"


def test_nvls_stays_off_and_caller_defaults_win():
  job = gpu.GpuJob(nnodes=1, node_rank=0, gpus_per_node=2)
  [env] = gpu.process_environments(job, base={"NCCL_NVLS_ENABLE": "1",
                                              "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.5"})
  assert env["NCCL_NVLS_ENABLE"] == "0"
  assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in env  # the caller's 0.5 stays in effect


@pytest.mark.parametrize("argv, message", [
    (["--nnodes", "2", "--node-rank", "2", "--gpus-per-node", "8", "--coordinator", "h:1"],
     r"NODE_RANK=2 must be in 0..1"),
    (["--nnodes", "2", "--gpus-per-node", "8"], "need a coordinator"),
    (["--nnodes", "2", "--gpus-per-node", "8", "--coordinator", "10.0.0.2"], "host:port"),
    (["--nnodes", "2", "--gpus-per-node", "8", "--coordinator", "h:70000"], "host:port"),
    (["--nnodes", "2", "--gpus-per-node", "8", "--coordinator", "127.0.0.1:1234"], "loopback"),
    (["--nnodes", "0", "--gpus-per-node", "8"], "NNODES must be >= 1"),
    (["--gpus-per-node", "8", "--mode", "gpu", "--coordinator", "bad host:1"],
     "neither an IP address nor a hostname"),
])
def test_validation_errors(argv, message):
  with pytest.raises(gpu.GpuLaunchError, match=message):
    plan(*argv, "--", "x")


def test_missing_command_and_gpu_count(monkeypatch):
  with pytest.raises(gpu.GpuLaunchError, match="missing command"):
    plan("--gpus-per-node", "1")
  monkeypatch.setattr(gpu, "detect_gpu_count", lambda: None)
  with pytest.raises(gpu.GpuLaunchError, match="no GPU count"):
    plan("--", "x")


def test_one_node_per_gpu_gets_a_local_coordinator():
  processes = plan("--gpus-per-node", "2", "--mode", "gpu", "--", "x")
  addresses = {env["JAX_COORDINATOR_ADDRESS"] for env, _ in processes}
  [address] = addresses
  host, port = address.rsplit(":", 1)
  assert host == "127.0.0.1" and 0 < int(port) < 65536
  assert [env["JAX_PROCESS_ID"] for env, _ in processes] == ["0", "1"]


def test_single_host_per_gpu_allows_loopback_coordinator():
  processes = plan("--gpus-per-node", "2", "--mode", "gpu", "--coordinator", "localhost:1234",
                   "--", "x")
  assert [env["JAX_PROCESS_ID"] for env, _ in processes] == ["0", "1"]


def test_spawn_runs_every_process_and_stops_the_rest_on_failure(tmp_path):
  ok = [({"AOMNI_T": str(i)}, [sys.executable, "-c",
                              f"import os; open(r'{tmp_path}/' + os.environ['AOMNI_T'], 'w')"])
        for i in range(2)]
  assert gpu.spawn(ok, poll_s=0.01) == 0
  assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1"]
  failing = [({}, [sys.executable, "-c", "import sys; sys.exit(7)"]),
             ({}, [sys.executable, "-c", "import time; time.sleep(60)"])]
  assert gpu.spawn(failing, poll_s=0.01) == 7  # returns promptly: the sleeper was terminated


SAVER = """
import os, signal, sys, time
def save(*_):
  open(sys.argv[1] + os.environ["JAX_PROCESS_ID"], "w").write("saved")
  sys.exit(0)
signal.signal(signal.SIGTERM, save)
open(sys.argv[1] + "ready" + os.environ["JAX_PROCESS_ID"], "w").close()
while True:
  time.sleep(0.05)
"""


def test_sigterm_to_the_launcher_reaches_every_process(tmp_path):
  """A scheduler's SIGTERM stops the job the way `stop` does on TPUs: each process saves."""
  (tmp_path / "saver.py").write_text(SAVER)
  launcher = subprocess.Popen(
      [sys.executable, "-m", "aomni_jax.cli.launch", "gpu", "--gpus-per-node", "2", "--mode",
       "gpu", "--", sys.executable, str(tmp_path / "saver.py"), str(tmp_path / "out")],
      env={**os.environ, "PYTHONPATH": str(cli.PROJECT_ROOT)}, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 60
  while not all((tmp_path / f"outready{i}").exists() for i in range(2)):
    assert time.monotonic() < deadline and launcher.poll() is None
    time.sleep(0.05)
  launcher.send_signal(signal.SIGTERM)
  _, err = launcher.communicate(timeout=60)
  assert launcher.returncode == 0, err  # both saved and exited cleanly
  assert [(tmp_path / f"out{i}").read_text() for i in range(2)] == ["saved", "saved"]
  assert "SIGTERM: stopping 2 process(es)" in err


CHILD = """
import sys
import jax
from aomni_jax import parallel
from aomni_jax.config import MeshConfig
assert parallel.initialize_distributed(MeshConfig())  # the launcher's environment, no flags
with open(sys.argv[1] + str(jax.process_index()), "w") as f:
  f.write(f"{jax.process_index()} {jax.process_count()} {jax.device_count()}")
"""


def test_processes_form_one_jax_runtime(tmp_path, monkeypatch):
  """Two CPU processes started by the launcher join one distributed JAX runtime."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  (tmp_path / "child.py").write_text(CHILD)
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.delenv("XLA_FLAGS", raising=False)  # one CPU device per process
  monkeypatch.setenv("PYTHONPATH", str(cli.PROJECT_ROOT))
  code = cli.main(["gpu", "--gpus-per-node", "2", "--mode", "gpu", "--coordinator",
                   f"127.0.0.1:{port}", "--", sys.executable, str(tmp_path / "child.py"),
                   str(tmp_path / "out")])
  assert code == 0
  assert [(tmp_path / f"out{i}").read_text() for i in range(2)] == ["0 2 2", "1 2 2"]
