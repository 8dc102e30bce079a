"""Exact resume: a run killed with SIGKILL at a random point and restarted reproduces the losses
of an uninterrupted run bit for bit (state, data position and keys all come from the checkpoint)."""

import json
import os
import random
import signal
import subprocess
import sys
import time


from tests.train.conftest import SMALL_VAE

NUM_STEPS = 6
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _command(workdir, data_root, model_dir):
  return [sys.executable, "-m", "aomni_jax.cli.train", "--config", "configs/tiny.py",
          "--workdir", workdir, "--set", f"data.root={data_root}", "data.num_workers=0",
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
  """step → every loss recorded for it (a resumed run records the replayed steps again)."""
  losses = {}
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as handle:
    for line in handle:
      record = json.loads(line)
      losses.setdefault(int(record["step"]), []).append(record["loss"])
  return losses


def _lines(path):
  if not os.path.exists(path):
    return 0
  with open(path, encoding="utf-8") as handle:
    return sum(1 for _ in handle)


def test_sigkill_and_resume_is_bitwise_identical(synthetic_dataset, model_dir, compilation_cache,
                                                 tmp_path):
  env = _env(compilation_cache)
  reference = str(tmp_path / "reference")
  subprocess.run(_command(reference, synthetic_dataset, model_dir), env=env, cwd=ROOT, check=True,
                 capture_output=True)
  expected = _losses(reference)
  assert sorted(expected) == list(range(NUM_STEPS))

  rng = random.Random(os.environ.get("PYTEST_SEED", time.time_ns()))
  killed = str(tmp_path / "killed")
  kill_after = rng.randint(1, NUM_STEPS - 2)  # logged steps before the kill
  process = subprocess.Popen(_command(killed, synthetic_dataset, model_dir), env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 300
  while _lines(os.path.join(killed, "metrics.jsonl")) < kill_after and process.poll() is None:
    assert time.monotonic() < deadline, "the run to be killed made no progress"
    time.sleep(0.05)
  time.sleep(rng.uniform(0.0, 0.5))
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert process.returncode != 0, "the run finished before it could be killed"

  result = subprocess.run(_command(killed, synthetic_dataset, model_dir), env=env, cwd=ROOT,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  got = _losses(killed)
  assert sorted(got) == list(range(NUM_STEPS)), f"killed after {kill_after} logged steps"
  for step, values in got.items():
    assert all(v == expected[step][0] for v in values), (step, values, expected[step])
