"""The gcloud commands each TPU subcommand generates, and the errors for bad arguments.

gcloud has no credentials here: the tests check argument lists (and run the generated remote
shell scripts locally against a fake worker home), never gcloud itself.
"""

import os
import pathlib
import shlex
import subprocess
import time

import pytest

from aomni_jax.cli import launch as cli
from aomni_jax.launch import tpu
from aomni_jax.launch.slices import SliceError, parse_slice

TARGET = ["--name", "aomni-a", "--zone", "us-east5-a", "--slice", "v5p-64"]
QUEUED = ["--name", "aomni-q", "--zone", "us-east5-a", "--slice", "v5p-64", "--queued",
          "--num-slices", "2", "--project", "my-proj-1"]


@pytest.fixture(autouse=True)
def _no_target_env(monkeypatch):
  for key in ("AOMNI_TPU_NAME", "AOMNI_TPU_ZONE", "AOMNI_TPU_SLICE", "AOMNI_TPU_NUM_SLICES",
              "AOMNI_TPU_QUEUED", "AOMNI_GCP_PROJECT"):
    monkeypatch.delenv(key, raising=False)


def commands(*argv):
  return cli.tpu_commands(cli.build_parser().parse_args(["tpu", *argv]))


def test_create_tpu_vm():
  assert commands("create", *TARGET, "--provisioning", "spot") == [[
      "gcloud", "compute", "tpus", "tpu-vm", "create", "aomni-a", "--zone=us-east5-a",
      "--accelerator-type=v5p-64", "--version=v2-alpha-tpuv5", "--spot"]]


def test_create_queued_multislice_best_effort():
  [cmd] = commands("create", *QUEUED, "--provisioning", "best-effort",
                   "--valid-until-duration", "6h")
  assert cmd == ["gcloud", "alpha", "compute", "tpus", "queued-resources", "create", "aomni-q",
                 "--zone=us-east5-a", "--accelerator-type=v5p-64",
                 "--runtime-version=v2-alpha-tpuv5", "--node-count=2", "--node-prefix=aomni-q",
                 "--best-effort", "--valid-until-duration=6h", "--project=my-proj-1"]


def test_create_queued_single_slice_reserved_v5e():
  [cmd] = commands("create", "--name", "e1", "--zone", "us-west4-a", "--slice", "v5e-16",
                   "--queued", "--provisioning", "reserved", "--runtime-version", "custom-rt")
  assert cmd == ["gcloud", "compute", "tpus", "queued-resources", "create", "e1",
                 "--zone=us-west4-a", "--accelerator-type=v5litepod-16",
                 "--runtime-version=custom-rt", "--node-id=e1", "--reserved"]


def test_setup_copies_the_tree_and_installs_on_every_worker():
  tar, scp, ssh = commands("setup", *TARGET, "--repo-dir", "/src/aomni")
  assert tar[:3] == ["tar", "-czf", tpu.default_tarball_path()] and tar[-3:] == [
      "-C", "/src/aomni", "."]
  assert "--exclude=.git" in tar and "--exclude=runs" in tar
  assert scp == ["gcloud", "compute", "tpus", "tpu-vm", "scp", tpu.default_tarball_path(),
                 "aomni-a:aomni_jax_src.tar.gz", "--zone=us-east5-a", "--worker=all"]
  assert ssh[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "aomni-a",
                     "--zone=us-east5-a", "--worker=all"]
  script = ssh[8].removeprefix("--command=")
  assert "pip install --quiet -e './aomni_jax[tpu]'" in script
  subprocess.run(["bash", "-n", "-c", script], check=True)  # valid shell


def test_setup_git_on_queued_nodes():
  [ssh] = commands("setup", *QUEUED, "--git-url", "https://example.com/aomni.git",
                   "--git-ref", "v1")
  assert ssh[:9] == ["gcloud", "compute", "tpus", "queued-resources", "ssh", "aomni-q",
                     "--zone=us-east5-a", "--node=all", "--worker=all"]
  assert "git clone --depth 1 --branch v1 https://example.com/aomni.git aomni_jax" in ssh[9]
  assert ssh[-1] == "--project=my-proj-1"


def test_run_env_workdir_and_placeholders():
  [ssh] = commands("run", *TARGET, "--run-name", "r1", "--workdir", "gs://bkt/runs/",
                   "--coordinator-port", "8476", "--env", "FOO=a b", "--", "aomni-train",
                   "--config", "configs/audio_omni.py", "--set", "train.workdir={workdir}")
  assert ssh[:8] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "aomni-a",
                     "--zone=us-east5-a", "--worker=all"]
  script = ssh[8].removeprefix("--command=")
  assert "AOMNI_WORKDIR=gs://bkt/runs/r1" in script
  assert "JAX_COORDINATOR_PORT=8476" in script and "FOO='a b'" in script
  assert ("nohup setsid aomni-train --config configs/audio_omni.py --set "
          "train.workdir=gs://bkt/runs/r1 >") in script


def test_logs_stop_status_teardown():
  [logs] = commands("logs", *QUEUED, "--run-name", "r1", "--worker", "3", "--node", "1")
  assert logs[6:9] == ["--zone=us-east5-a", "--node=1", "--worker=3"]
  assert logs[9] == "--command=tail -n 200 -F $HOME/aomni_runs/r1.log"
  [stop] = commands("stop", *TARGET, "--run-name", "r1")
  assert "kill -TERM -- -$(cat $HOME/aomni_runs/r1.pid)" in stop[-1]
  assert commands("status", *TARGET) == [["gcloud", "compute", "tpus", "tpu-vm", "describe",
                                          "aomni-a", "--zone=us-east5-a"]]
  assert commands("teardown", *TARGET) == [["gcloud", "compute", "tpus", "tpu-vm", "delete",
                                            "aomni-a", "--zone=us-east5-a", "--quiet", "--async"]]
  assert commands("teardown", *QUEUED, "--wait") == [[
      "gcloud", "compute", "tpus", "queued-resources", "delete", "aomni-q", "--zone=us-east5-a",
      "--force", "--quiet", "--project=my-proj-1"]]


def test_target_from_environment(monkeypatch):
  monkeypatch.setenv("AOMNI_TPU_NAME", "env-tpu")
  monkeypatch.setenv("AOMNI_TPU_ZONE", "europe-west4-b")
  monkeypatch.setenv("AOMNI_TPU_SLICE", "v4-32")
  [cmd] = commands("status")
  assert cmd[-2:] == ["env-tpu", "--zone=europe-west4-b"]


@pytest.mark.parametrize("argv, error, message", [
    (["create", "--zone", "us-east5-a", "--slice", "v5p-64"], tpu.LaunchError, "missing TPU name"),
    (["create", "--name", "Bad_Name", "--zone", "us-east5-a", "--slice", "v5p-64"],
     tpu.LaunchError, "TPU name 'Bad_Name' is invalid"),
    (["create", "--name", "a", "--zone", "us-east5", "--slice", "v5p-64"], tpu.LaunchError,
     "zone 'us-east5' is not a zone name"),
    (["create", "--name", "a", "--zone", "us-east5-a"], tpu.LaunchError, "missing --slice"),
    (["create", "--name", "a", "--zone", "us-east5-a", "--slice", "v5p-63"], SliceError,
     "does not exist"),
    (["create", *TARGET, "--num-slices", "2"], tpu.LaunchError, "needs --queued"),
    (["create", *TARGET, "--provisioning", "best-effort"], tpu.LaunchError, "add --queued"),
    (["create", "--name", "a", "--zone", "us-east5-a", "--slice", "v5e-8", "--queued",
      "--num-slices", "2"], tpu.LaunchError, "single host"),
    (["logs", *TARGET, "--run-name", "r", "--worker", "8"], tpu.LaunchError,
     r"v5p-64 has 8 worker\(s\) \(0..7\); \[8\] out of range"),
    (["logs", *QUEUED, "--run-name", "r", "--node", "2"], tpu.LaunchError, "slice index"),
    (["run", *TARGET, "--run-name", "r", "--workdir", "runs/r", "--", "x"], tpu.LaunchError,
     "must share one checkpoint directory"),
    (["run", *TARGET, "--run-name", "r", "--workdir", "gs://bkt"], tpu.LaunchError,
     "missing command"),
    (["run", *TARGET, "--run-name", "a b", "--workdir", "gs://bkt", "--", "x"], tpu.LaunchError,
     "run name 'a b'"),
    (["run", *TARGET, "--run-name", "r", "--workdir", "gs://bkt", "--env", "1X=2", "--", "x"],
     tpu.LaunchError, "NAME=value"),
    (["setup", *TARGET, "--git-url", "github.com/x"], tpu.LaunchError, "--git-url"),
])
def test_validation_errors(argv, error, message):
  with pytest.raises(error, match=message):
    commands(*argv)


def test_single_host_run_accepts_a_local_workdir():
  [ssh] = commands("run", "--name", "a", "--zone", "us-east5-a", "--slice", "v4-8",
                   "--run-name", "r", "--workdir", "/data/runs", "--", "x")
  assert "AOMNI_WORKDIR=/data/runs/r" in ssh[-1]


def test_dry_run_prints_and_runs_nothing(capsys, monkeypatch):
  monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("dry run ran a command"))
  assert cli.main(["tpu", "teardown", *TARGET, "--dry-run"]) == 0
  out = capsys.readouterr().out.strip()
  assert shlex.split(out) == commands("teardown", *TARGET)[0]
  assert cli.main(["tpu", "create", *TARGET, "--num-slices", "3", "--dry-run"]) == 2
  assert "needs --queued" in capsys.readouterr().err


def _remote_script(cmd):
  return cmd[cmd.index(next(a for a in cmd if a.startswith("--command=")))].removeprefix(
      "--command=")


def test_run_and_stop_scripts_on_a_fake_worker(tmp_path):
  """The detached run writes its log and pid under ~/aomni_runs; stop ends its process group."""
  home = tmp_path
  (home / tpu.REMOTE_DIR).mkdir()
  bin_dir = home / tpu.REMOTE_VENV / "bin"
  bin_dir.mkdir(parents=True)
  fake = bin_dir / "fake-train"
  fake.write_text("#!/bin/bash\necho run=$AOMNI_RUN_NAME workdir=$AOMNI_WORKDIR args=$*\n"
                  "sleep 60 & wait\n")
  fake.chmod(0o755)
  env = {"HOME": str(home), "PATH": os.environ["PATH"]}
  [run] = commands("run", "--name", "a", "--zone", "us-east5-a", "--slice", "v4-8",
                   "--run-name", "r1", "--workdir", str(home / "w"), "--", "fake-train", "--x",
                   "{run_name}")
  subprocess.run(["bash", "-c", _remote_script(run)], env=env, check=True, timeout=30,
                 capture_output=True)
  log = home / tpu.RUNS_DIR / "r1.log"
  pid = int((home / tpu.RUNS_DIR / "r1.pid").read_text())
  deadline = time.monotonic() + 10
  while "args" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
    time.sleep(0.05)
  assert log.read_text().strip() == f"run=r1 workdir={home / 'w' / 'r1'} args=--x r1"
  assert os.getpgid(pid) == pid  # its own process group, so stop reaches the children too
  [stop] = commands("stop", "--name", "a", "--zone", "us-east5-a", "--slice", "v4-8",
                    "--run-name", "r1")
  out = subprocess.run(["bash", "-c", _remote_script(stop)], env=env, check=True, timeout=30,
                       capture_output=True, text=True).stdout
  assert out.startswith("stopped on")
  deadline = time.monotonic() + 10
  while _alive(pid) and time.monotonic() < deadline:
    time.sleep(0.05)
  assert not _alive(pid)
  assert not (home / tpu.RUNS_DIR / "r1.pid").exists()


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  status = pathlib.Path(f"/proc/{pid}/stat")
  return status.exists() and status.read_text().split()[2] != "Z"


def test_slice_facts_reach_gcloud():
  target = tpu.TpuTarget("a", "us-central2-b", parse_slice("v4-32"))
  assert target.workers == 4
  assert tpu.create_commands(target)[0][-1] == "--version=tpu-ubuntu2204-base"


def test_shell_wrappers_dispatch_on_their_name(tmp_path):
  tpu_dir = pathlib.Path(cli.PROJECT_ROOT) / "launch" / "tpu"
  for action in cli.TPU_ACTIONS:  # every action has its link to the one dispatcher
    assert (tpu_dir / f"{action}.sh").resolve() == (tpu_dir / "tpu.sh").resolve()
  for argv, action in (([tpu_dir / "teardown.sh"], "teardown"),
                       ([tpu_dir / "tpu.sh", "status"], "status")):
    out = subprocess.run([*map(str, argv), *TARGET, "--dry-run"], cwd=tmp_path, timeout=60,
                         capture_output=True, text=True, check=True).stdout  # any cwd works
    assert shlex.split(out) == commands(action, *TARGET)[0]
  root = cli.PROJECT_ROOT
  assert commands("setup", *TARGET)[0][-2] == str(root)  # setup copies this checkout
