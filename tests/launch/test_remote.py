"""The worker scripts, run for real on two fake workers (local shells with their own $HOME).

Each step takes the `--command=` payload of the exact gcloud command `aomni-launch tpu` builds and
runs it on both workers at once, as `--worker=all` does: setup → run → (refused second run) →
stop → run again → stop; a job that ignores SIGTERM; a job that dies at start-up; `--attach`;
an orphan holding the chips. uv is a stand-in that records its calls and makes a venv whose
python is this interpreter; everything else (bash, setsid, ps, lsof, kill) is the real thing.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import jax
import pytest

from aomni_jax.cli import launch as cli
from aomni_jax.launch import remote

TARGET = ["--name", "aomni-a", "--zone", "us-east5-a", "--slice", "v4-32"]

FAKE_UV = f"""#!/bin/bash
echo "$*" >> "$HOME/uv.calls"
case "$1" in
  --version) echo "uv {remote.UV_VERSION} (x86_64-unknown-linux-gnu)" ;;
  venv) mkdir -p "${{@: -1}}/bin" && ln -s {sys.executable} "${{@: -1}}/bin/python" ;;
esac
"""

JOB = """
import os, signal, subprocess, sys, time
mode = sys.argv[1]
print(f"{os.environ['AOMNI_RUN_NAME']} {mode} in {os.getcwd()}", flush=True)
if mode.startswith("exit"):
  print("bad flag --x", flush=True)
  sys.exit(int(mode[4:]))
def save_and_exit(*_):
  print("SIGTERM: checkpoint saved", flush=True)
  sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else save_and_exit)
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # data worker
with open(os.path.join(os.environ["HOME"], "worker.pid"), "w") as f:
  f.write(str(worker.pid))
while True:
  time.sleep(0.05)
"""


def _payload(command):
  [script] = [a.removeprefix("--command=") for a in command if a.startswith("--command=")]
  return script


def _alive(pid: int) -> bool:
  stat = pathlib.Path(f"/proc/{pid}/stat")
  try:
    return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
  except (FileNotFoundError, ProcessLookupError):
    return False


class Workers:
  """Two worker homes; `ssh(argv...)` runs an action's (last) ssh payload on both at once."""

  def __init__(self, root: pathlib.Path):
    self.homes = [root / f"worker{i}" for i in range(2)]
    for home in self.homes:
      (home / ".local" / "bin").mkdir(parents=True)
      uv = home / ".local" / "bin" / "uv"
      uv.write_text(FAKE_UV)
      uv.chmod(0o755)

  def ssh(self, *argv: str) -> list[subprocess.CompletedProcess]:
    script = _payload(cli.tpu_commands(cli.build_parser().parse_args(["tpu", *argv]))[-1])
    procs = [subprocess.Popen(
        ["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"HOME": str(home), "PATH": os.environ["PATH"],
             "PYTHONPATH": str(cli.PROJECT_ROOT)}) for home in self.homes]
    results = []
    for proc in procs:
      out, err = proc.communicate(timeout=120)
      results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results

  def pid(self, home: pathlib.Path, run: str) -> int:
    return int((home / remote.RUNS_DIR / f"{run}.pid").read_text())

  def job_and_data_worker(self, home: pathlib.Path, run: str) -> tuple[int, int]:
    deadline = time.monotonic() + 10
    while not (home / "worker.pid").exists() and time.monotonic() < deadline:
      time.sleep(0.05)
    return self.pid(home, run), int((home / "worker.pid").read_text())


@pytest.fixture
def workers(tmp_path, monkeypatch):
  # This machine's real chips and lockfile stay untouched: each worker has fake ones.
  monkeypatch.setattr(remote, "CHIP_DEVICES", ("$HOME/dev/accel*",))
  monkeypatch.setattr(remote, "LIBTPU_LOCKFILE", "$HOME/libtpu_lockfile")
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where setup stages the tarball
  return Workers(tmp_path)


def _run(workers, run, mode, *flags):
  return workers.ssh("run", *TARGET, "--run-name", run, "--workdir", "gs://bkt/runs",
                     "--startup-s", "1", *flags, "--", "python", "job.py", mode)


def _wait_gone(pids, timeout=10):
  deadline = time.monotonic() + timeout
  while any(_alive(p) for p in pids) and time.monotonic() < deadline:
    time.sleep(0.05)
  return [p for p in pids if _alive(p)]


def test_setup_run_stop_run_on_two_workers(workers, tmp_path):
  repo = tmp_path / "repo"
  repo.mkdir()
  for name in (remote.CONSTRAINTS, remote.NODEPS_REQUIREMENTS):
    (repo / name).write_text("# pinned\n")
  (repo / "job.py").write_text(JOB)
  for home in workers.homes:  # last week's setup: a file since deleted, an old venv
    (home / remote.REMOTE_DIR).mkdir()
    (home / remote.REMOTE_DIR / "deleted_since.py").write_text("")
    (home / remote.REMOTE_VENV / "bin").mkdir(parents=True)

  tar, scp, ssh = cli.tpu_commands(cli.build_parser().parse_args(
      ["tpu", "setup", *TARGET, "--repo-dir", str(repo)]))
  subprocess.run(tar, check=True)
  for home in workers.homes:  # what `gcloud ... scp --worker=all` does
    shutil.copy(scp[5], home / remote.SOURCE_TARBALL)
  for result in workers.ssh("setup", *TARGET, "--repo-dir", str(repo)):
    assert result.returncode == 0, result.stderr
    assert "aomni_jax ready on" in result.stdout
  for home in workers.homes:
    assert sorted(p.name for p in (home / remote.REMOTE_DIR).iterdir()) == [
        remote.CONSTRAINTS, "job.py", remote.NODEPS_REQUIREMENTS]
    calls = (home / "uv.calls").read_text().splitlines()
    assert calls == [
        "--version", f"venv --quiet --python 3.12 {remote.REMOTE_VENV}",
        f"pip install --quiet --python {remote.REMOTE_VENV}/bin/python -c "
        f"{remote.REMOTE_DIR}/{remote.CONSTRAINTS} -e ./{remote.REMOTE_DIR}[tpu]",
        f"pip install --quiet --python {remote.REMOTE_VENV}/bin/python --no-deps -r "
        f"{remote.REMOTE_DIR}/{remote.NODEPS_REQUIREMENTS}"]
    assert not (home / remote.SOURCE_TARBALL).exists()

  for result in workers.ssh("check", *TARGET):  # versions, then JAX's view of the devices
    assert result.returncode == 0, result.stderr
    assert f" jax={jax.__version__} " in result.stdout and " process=0/1 " in result.stdout

  for result in _run(workers, "r1", "train"):
    assert result.returncode == 0 and result.stdout.startswith("started r1 on "), result
  first = [workers.job_and_data_worker(home, "r1") for home in workers.homes]
  assert all(_alive(pid) for pair in first for pid in pair)
  for result in workers.ssh("check", *TARGET):  # the chips are the run's: versions only
    assert result.returncode == 0 and "run r1 is running" in result.stdout, result
    assert "process=" not in result.stdout

  for result in _run(workers, "r2", "train"):  # the chips are taken: refused, r1 untouched
    assert result.returncode == remote.EXIT_RUN_IS_LIVE
    assert "run r1 is still running" in result.stderr
  for result in workers.ssh("setup", *TARGET):  # and no setup under a live job either
    assert result.returncode == remote.EXIT_RUN_IS_LIVE

  for result in workers.ssh("stop", *TARGET, "--run-name", "r1", "--timeout-s", "20"):
    assert result.returncode == 0 and "stopped r1 on" in result.stdout, result
  assert _wait_gone([pid for pair in first for pid in pair], timeout=2) == []
  for home in workers.homes:
    log = (home / remote.RUNS_DIR / "r1.log").read_text()
    assert log.splitlines() == [f"r1 train in {home / remote.REMOTE_DIR}",
                                "SIGTERM: checkpoint saved"]
    assert not (home / remote.RUNS_DIR / "r1.pid").exists()
    (home / "worker.pid").unlink()

  # An orphan of an earlier job still holds worker 0's chips: the next run frees them.
  home0 = workers.homes[0]
  (home0 / "dev").mkdir()
  (home0 / "dev" / "accel0").write_text("")
  with (home0 / "dev" / "accel0").open() as held:
    orphan = subprocess.Popen(["sleep", "600"], stdin=held)
  (home0 / "libtpu_lockfile").write_text("")
  results = _run(workers, "r1", "train")
  assert all(r.returncode == 0 and "started r1" in r.stdout for r in results), results
  assert results[0].stdout.startswith("freeing the TPU chips on") and (
      f"killing process(es) {orphan.pid}" in results[0].stdout)
  assert "freeing" not in results[1].stdout
  assert orphan.wait(timeout=10) == -9 and not (home0 / "libtpu_lockfile").exists()
  second = [workers.job_and_data_worker(home, "r1") for home in workers.homes]
  for result in workers.ssh("stop", *TARGET, "--run-name", "r1", "--timeout-s", "20"):
    assert result.returncode == 0, result
  assert _wait_gone([pid for pair in second for pid in pair], timeout=2) == []
  for result in workers.ssh("stop", *TARGET, "--run-name", "r1"):
    assert "r1 is not running on" in result.stdout


def test_stop_kills_a_job_that_ignores_sigterm(workers, tmp_path):
  _install_job(workers)
  for result in _run(workers, "r3", "stubborn"):
    assert result.returncode == 0, result
  pids = [pid for home in workers.homes for pid in workers.job_and_data_worker(home, "r3")]
  started = time.monotonic()
  for result in workers.ssh("stop", *TARGET, "--run-name", "r3", "--timeout-s", "2"):
    assert result.returncode == 0, result
    assert "still running 2s after SIGTERM; sending SIGKILL" in result.stdout
  assert time.monotonic() - started < 15
  assert _wait_gone(pids, timeout=2) == []


def test_a_job_that_dies_at_start_up_is_reported_with_its_log(workers):
  _install_job(workers)
  for result in _run(workers, "r4", "exit4"):
    assert result.returncode == 1
    assert "error: r4 exited with code 4 within 1s on" in result.stderr
    assert result.stderr.rstrip().endswith("bad flag --x")  # the log's tail
    assert "started" not in result.stdout
  assert not any((home / remote.RUNS_DIR / "r4.pid").exists() for home in workers.homes)


def test_attach_streams_and_keeps_the_exit_code(workers):
  _install_job(workers)
  for result in _run(workers, "r5", "exit7", "--attach"):
    assert result.returncode == 7
    assert result.stdout.splitlines()[-2:] == ["bad flag --x", "r5 exited with code 7 on "
                                               + result.stdout.rsplit(" on ", 1)[1].strip()]
  for home in workers.homes:
    assert (home / remote.RUNS_DIR / "r5.log").read_text().endswith("bad flag --x\n")
    assert not (home / remote.RUNS_DIR / "r5.pid").exists()


def _install_job(workers):
  """The state `setup` leaves (tested above), without repeating it."""
  for home in workers.homes:
    (home / remote.REMOTE_DIR).mkdir()
    (home / remote.REMOTE_DIR / "job.py").write_text(JOB)
    (home / remote.REMOTE_VENV / "bin").mkdir(parents=True)
    (home / remote.REMOTE_VENV / "bin" / "python").symlink_to(sys.executable)
