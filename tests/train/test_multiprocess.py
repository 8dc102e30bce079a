"""The closest thing to a pod here: 2 processes × 4 CPU devices (`jax.distributed` on localhost)
train with one shared workdir, each reading its own part of every global batch; both are killed
after a checkpoint and resumed, once with 2 processes and once with 1 process × 8 devices. The
losses equal those of an uninterrupted 1 process × 8 devices run to float32 round-off (rtol 1e-6;
measured: ≤ 1.5e-7 relative, from partial sums grouped per process)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.train.conftest import SMALL_VAE
from tests.train.test_resume import ROOT, _losses

NUM_STEPS = 6
DEVICES = 8


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def precomputed(synthetic_dataset, model_dir, tmp_path_factory) -> str:
  """The synthetic dataset with every frozen feature stored (a pod trains on these: each process
  reads its part of the batch, and nothing frozen runs inside the training processes)."""
  out = str(tmp_path_factory.mktemp("mp") / "features")
  subprocess.run([sys.executable, "-m", "aomni_jax.cli.data", "precompute", "--data",
                  synthetic_dataset, "--out", out, "--model", model_dir, "--batch-size", "4"],
                 env=dict(os.environ, JAX_PLATFORMS="cpu"), cwd=ROOT, check=True,
                 capture_output=True)
  return out


def _launch(workdir, data_root, model_dir, cache_dir, processes):
  """`processes` CLI processes over DEVICES CPU devices in total; returns the Popen objects."""
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES // processes}")
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  command = [sys.executable, "-m", "aomni_jax.cli.train", "--config", "configs/tiny.py",
             "--workdir", workdir, "--set", f"data.root={data_root}", f"data.model_dir={model_dir}",
             "data.num_workers=0",
             "train.batch_size=8", f"train.num_steps={NUM_STEPS}", "train.checkpoint_every=2",
             "train.num_sample_steps=0", "dit.depth=1", *SMALL_VAE]
  if processes > 1:
    command += [f"mesh.coordinator_address=localhost:{port}", f"mesh.num_processes={processes}"]
  return [subprocess.Popen(command + ([f"mesh.process_id={i}"] if processes > 1 else []),
                           env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
          for i in range(processes)]


def _finish(processes):
  outputs = [p.communicate(timeout=600) for p in processes]
  for p, (_, err) in zip(processes, outputs):
    assert p.returncode == 0, err[-3000:]


@pytest.mark.slow
def test_two_processes_kill_resume_equal_one_process(precomputed, model_dir, compilation_cache,
                                                     tmp_path):
  reference = str(tmp_path / "reference")
  _finish(_launch(reference, precomputed, model_dir, compilation_cache, 1))
  expected = _losses(reference)
  assert [step for step, _ in expected] == list(range(NUM_STEPS))

  shared = str(tmp_path / "shared")
  running = _launch(shared, precomputed, model_dir, compilation_cache, 2)
  deadline = time.monotonic() + 600
  # Orbax renames a step's folder into place once every process has written its part.
  while not os.path.isdir(os.path.join(shared, "checkpoints", "2")):
    assert time.monotonic() < deadline and all(p.poll() is None for p in running), \
        "the 2-process run made no progress: " + "".join(p.communicate()[1][-2000:]
                                                          for p in running)
    time.sleep(0.05)
  for p in running:
    p.send_signal(signal.SIGKILL)
  for p in running:
    p.communicate()
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  other_count = str(tmp_path / "other_count")
  shutil.copytree(shared, other_count)

  _finish(_launch(shared, precomputed, model_dir, compilation_cache, 2))
  _finish(_launch(other_count, precomputed, model_dir, compilation_cache, 1))
  # Same SPMD program and global batches; the cross-process reductions may group partial sums
  # differently from the single-process ones, hence a float32 round-off tolerance.
  for workdir in (shared, other_count):
    got = _losses(workdir)
    assert [step for step, _ in got] == list(range(NUM_STEPS)), workdir
    np.testing.assert_allclose([loss for _, loss in got], [loss for _, loss in expected],
                               rtol=1e-6, err_msg=workdir)
