"""The gcloud commands each TPU subcommand generates, and the errors for bad arguments.

gcloud has no credentials here: the tests check argument lists, never gcloud itself; the worker
scripts run on fake workers in test_remote.py, and test_tpu_golden.py pins whole command lines.
"""

import pathlib
import shlex
import subprocess

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
  assert ("pip install --quiet --python aomni_venv/bin/python -c aomni_jax/constraints.txt "
          "-e './aomni_jax[tpu]'") in script
  assert "venv --quiet --python 3.12 aomni_venv" in script
  assert "--no-deps -r aomni_jax/requirements-nodeps.txt" in script
  subprocess.run(["bash", "-n", "-c", script], check=True)  # valid shell


def test_setup_git_on_queued_nodes():
  [ssh] = commands("setup", *QUEUED, "--git-url", "https://example.com/aomni.git",
                   "--git-ref", "v1")
  assert ssh[:9] == ["gcloud", "compute", "tpus", "queued-resources", "ssh", "aomni-q",
                     "--zone=us-east5-a", "--node=all", "--worker=all"]
  assert ("git clone --quiet --depth 1 --branch v1 https://example.com/aomni.git "
          "aomni_jax.new") in ssh[9]
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
          "train.workdir=gs://bkt/runs/r1 >>") in script
  subprocess.run(["bash", "-n", "-c", script], check=True)


def test_logs_stop_status_teardown():
  [logs] = commands("logs", *QUEUED, "--run-name", "r1", "--worker", "3", "--node", "1")
  assert logs[6:9] == ["--zone=us-east5-a", "--node=1", "--worker=3"]
  assert logs[9] == "--command=tail -n 200 -F $HOME/aomni_runs/r1.log"
  [stop] = commands("stop", *TARGET, "--run-name", "r1", "--timeout-s", "60")
  assert "kill -TERM -- -$pid" in stop[-1] and "-lt 60 ]" in stop[-1]
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
    (["logs", *QUEUED, "--run-name", "r", "--node", "2"], tpu.LaunchError,
     r"there are 2 slice\(s\) \(0..1\); \[2\] out of range"),
    (["logs", *TARGET, "--run-name", "r", "--worker", "3-1"], tpu.LaunchError, "backwards"),
    (["logs", *TARGET, "--run-name", "r", "--worker", "1-"], tpu.LaunchError, "a range like"),
    (["check", *TARGET, "--internal-ip", "--tunnel-through-iap"], tpu.LaunchError,
     "exclude each other"),
    (["check", *TARGET, "--gcloud-arg=verbosity"], tpu.LaunchError, "a gcloud flag"),
    (["create", *TARGET, "--reservation", "res-1"], tpu.LaunchError, "add --queued"),
    (["create", *QUEUED, "--reservation", "res-1", "--provisioning", "spot"], tpu.LaunchError,
     "drop --provisioning spot"),
    (["stop", *TARGET, "--run-name", "r", "--timeout-s", "-1"], tpu.LaunchError, "timeout"),
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
  err = capsys.readouterr().err  # one line, the console convention
  assert err.startswith("aomni-launch: --num-slices 3 (Multislice) needs --queued") and (
      err.count("\n") == 1)


def test_access_flags_reach_every_ssh_and_scp():
  flags = ["--internal-ip", "--ssh-flag=-o ServerAliveInterval=30",
           "--gcloud-arg=--verbosity=debug"]
  tar, scp, ssh = commands("setup", *TARGET, *flags)
  assert scp[-3:] == ["--internal-ip", "--scp-flag=-o ServerAliveInterval=30",
                      "--verbosity=debug"]
  assert ssh[8:10] == ["--internal-ip", "--ssh-flag=-o ServerAliveInterval=30"]
  assert ssh[-1] == "--verbosity=debug" and ssh[-2].startswith("--command=")
  # IAP and batch size: queued-resources ssh takes them in GA, tpu-vm ssh only in alpha.
  [qr] = commands("stop", *QUEUED, "--run-name", "r", "--tunnel-through-iap",
                  "--ssh-batch-size", "8")
  assert qr[:3] == ["gcloud", "compute", "tpus"] and qr[9:11] == [
      "--tunnel-through-iap", "--batch-size=8"]
  [vm] = commands("logs", *TARGET, "--run-name", "r", "--worker", "0,2-3",
                  "--tunnel-through-iap")
  assert vm[:5] == ["gcloud", "alpha", "compute", "tpus", "tpu-vm"]
  assert vm[8:10] == ["--worker=0,2-3", "--tunnel-through-iap"]


def test_create_with_network_identity_and_reservation():
  [vm] = commands("create", *TARGET, "--internal-ip", "--network", "vpc1", "--subnetwork",
                  "sub1", "--service-account", "sa@p.iam.gserviceaccount.com", "--scopes",
                  "cloud-platform")
  assert vm[-5:] == ["--internal-ips", "--network=vpc1", "--subnetwork=sub1",
                     "--service-account=sa@p.iam.gserviceaccount.com", "--scopes=cloud-platform"]
  [qr] = commands("create", *QUEUED, "--reservation", "res-1")
  assert qr[:6] == ["gcloud", "alpha", "compute", "tpus", "queued-resources", "create"]
  assert "--reservation=res-1" in qr and "--reserved" not in qr


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
