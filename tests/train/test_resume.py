"""Exact resume: a run killed with SIGKILL, or stopped with SIGTERM, at a random point and
restarted reproduces the losses of an uninterrupted run bit for bit (state, data position and keys
all come from the checkpoint), and `metrics.jsonl` holds exactly one row per step."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.train.conftest import SMALL_VAE

NUM_STEPS = 8
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _command(workdir, data_root, model_dir, workers=0):
  return [sys.executable, "-m", "aomni_jax.cli.train", "--config", "configs/tiny.py",
          "--workdir", workdir, "--set", f"data.root={data_root}", f"data.num_workers={workers}",
          f"data.model_dir={model_dir}",
          "train.batch_size=2", f"train.num_steps={NUM_STEPS}", "train.checkpoint_every=2",
          "train.num_sample_steps=0", *SMALL_VAE]


def _env(cache_dir):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _losses(workdir):
  """[(step, loss)] in file order."""
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as handle:
    return [(int(r["step"]), r["loss"]) for r in map(json.loads, handle)]


def _lines(path):
  if not os.path.exists(path):
    return 0
  with open(path, encoding="utf-8") as handle:
    return sum(1 for _ in handle)


@pytest.fixture(scope="module")
def reference(synthetic_dataset, model_dir, compilation_cache, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference"))
  subprocess.run(_command(workdir, synthetic_dataset, model_dir), env=_env(compilation_cache),
                 cwd=ROOT, check=True, capture_output=True)
  losses = _losses(workdir)
  assert [step for step, _ in losses] == list(range(NUM_STEPS))
  return losses


def _stop_at_a_random_point(command, env, workdir, sig):
  rng = random.Random(os.environ.get("PYTEST_SEED", time.time_ns()))
  # Logged steps before the signal. A loss row is written one step late (metrics are fetched a
  # step behind, so the host never waits for the device), the signal lands up to 0.2 s later,
  # and a step in flight when it lands is followed by one more: the run stops at most 3 steps
  # after `kill_after`, which must leave it short of the end.
  kill_after = rng.randint(1, NUM_STEPS - 4)
  process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 300
  while _lines(os.path.join(workdir, "metrics.jsonl")) < kill_after and process.poll() is None:
    assert time.monotonic() < deadline, "the run to be stopped made no progress"
    time.sleep(0.05)
  time.sleep(rng.uniform(0.0, 0.2))  # within a step (steps take 0.3–1 s here)
  process.send_signal(sig)
  stdout, stderr = process.communicate()
  return process.returncode, stdout, stderr, kill_after


def _resume_and_compare(command, env, workdir, expected, context):
  result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  # One row per step (the rows of redone steps were cut on restore), equal bit for bit.
  assert _losses(workdir) == expected, context


def test_sigkill_and_resume_is_bitwise_identical(reference, synthetic_dataset, model_dir,
                                                 compilation_cache,
                                                 tmp_path):
  env = _env(compilation_cache)
  killed = str(tmp_path / "killed")
  command = _command(killed, synthetic_dataset, model_dir)
  returncode, _, _, kill_after = _stop_at_a_random_point(command, env, killed, signal.SIGKILL)
  assert returncode != 0, "the run finished before it could be killed"
  _resume_and_compare(command, env, killed, reference, f"killed after {kill_after} logged steps")


def test_sigterm_checkpoints_exits_0_and_resumes_bitwise(reference, synthetic_dataset, model_dir,
                                                         compilation_cache, tmp_path):
  env = _env(compilation_cache)
  stopped = str(tmp_path / "stopped")
  # grain workers must shut down too
  command = _command(stopped, synthetic_dataset, model_dir, workers=1)
  returncode, stdout, stderr, kill_after = _stop_at_a_random_point(command, env, stopped,
                                                                   signal.SIGTERM)
  assert returncode == 0, stderr[-3000:]
  match = re.search(r"interrupted at step (\d+); run the same command to resume", stdout)
  assert match, stdout + stderr[-3000:]
  step = int(match.group(1))
  assert kill_after <= step < NUM_STEPS
  assert str(step) in os.listdir(os.path.join(stopped, "checkpoints"))  # saved on the signal
  assert [s for s, _ in _losses(stopped)] == list(range(step))
  assert "leaked shared_memory" not in stderr and "Traceback" not in stderr, stderr[-3000:]
  _resume_and_compare(command, env, stopped, reference, f"SIGTERM after {kill_after} steps")
