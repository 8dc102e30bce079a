"""gcloud command lines for the life of a Cloud TPU training job: create, set up, run, logs, stop.

Every function returns argv lists and runs nothing, so the exact commands can be printed
(`--dry-run`) and tested without credentials. A target is either a single TPU VM slice
(`gcloud compute tpus tpu-vm ...`) or a queued resource (`gcloud compute tpus queued-resources
...`), which Cloud TPU requires for Multislice and offers for capacity that is not there yet.
Multi-host slices need the same command on every worker at once (`--worker=all`): a single
worker blocks forever in JAX's distributed initialisation waiting for the others.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import tempfile
from typing import Mapping, Sequence

from aomni_jax.launch.slices import TpuSlice

PROVISIONING = ("on-demand", "spot", "reserved", "best-effort")
REMOTE_DIR = "aomni_jax"  # relative to the worker's home directory
REMOTE_VENV = "aomni_venv"
RUNS_DIR = "aomni_runs"  # per-run log and pid files on every worker
SOURCE_TARBALL = "aomni_jax_src.tar.gz"
# Paths that never travel to the workers: VCS data, local runs, caches, build outputs.
SOURCE_EXCLUDES = (".git", "runs", ".cache", ".whl", "build", "dist", "*.egg-info",
                   "__pycache__", ".pytest_cache", "*.pyc")

_NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_ZONE_RE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]")
_PROJECT_RE = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
_RUN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_GCS_RE = re.compile(r"gs://[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9](/.*)?")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class LaunchError(ValueError):
  """An argument that would make gcloud or the job fail later."""


@dataclasses.dataclass(frozen=True)
class TpuTarget:
  """Which TPU a command talks to."""

  name: str
  zone: str
  tpu: TpuSlice
  num_slices: int = 1
  queued: bool = False  # a queued resource (required for num_slices > 1)
  project: str | None = None

  def __post_init__(self):
    if not self.name:
      raise LaunchError("missing TPU name: pass --name (or set AOMNI_TPU_NAME)")
    if not _NAME_RE.fullmatch(self.name):
      raise LaunchError(f"TPU name {self.name!r} is invalid: expected 1-63 lowercase letters, "
                        f"digits or '-', starting with a letter and not ending with '-'")
    if not self.zone:
      raise LaunchError("missing zone: pass --zone (or set AOMNI_TPU_ZONE), e.g. us-east5-a")
    if not _ZONE_RE.fullmatch(self.zone):
      raise LaunchError(f"zone {self.zone!r} is not a zone name like us-east5-a "
                        f"(region-location+digit-letter)")
    if self.project is not None and not _PROJECT_RE.fullmatch(self.project):
      raise LaunchError(f"project {self.project!r} is not a Google Cloud project id "
                        f"(6-30 lowercase letters, digits or '-', starting with a letter)")
    if self.num_slices < 1:
      raise LaunchError(f"--num-slices must be >= 1, got {self.num_slices}")
    if self.num_slices > 1 and not self.queued:
      raise LaunchError(f"--num-slices {self.num_slices} (Multislice) needs --queued: Cloud TPU "
                        f"only creates Multislice through queued resources")
    if self.num_slices > 1 and self.tpu.hosts == 1:
      raise LaunchError(f"Multislice needs multi-host slices; {self.tpu.name} is a single host")

  @property
  def workers(self) -> int:
    """TPU VMs per slice."""
    return self.tpu.hosts

  def _gcloud(self, *args: str, alpha: bool = False) -> list[str]:
    cmd = ["gcloud", *(["alpha"] if alpha else []), "compute", "tpus", *args]
    return cmd + ([f"--project={self.project}"] if self.project else [])

  def _kind(self) -> str:
    return "queued-resources" if self.queued else "tpu-vm"

  def check_worker(self, worker: str) -> str:
    """'all', one index or a comma list, each below the slice's worker count."""
    if worker == "all":
      return worker
    parts = worker.split(",")
    if not all(p.isdigit() for p in parts):
      raise LaunchError(f"--worker {worker!r}: expected 'all', an index or a comma list like 0,2")
    bad = [int(p) for p in parts if int(p) >= self.workers]
    if bad:
      raise LaunchError(f"--worker {worker!r}: {self.tpu.name} has {self.workers} worker(s) "
                        f"(0..{self.workers - 1}); {bad} out of range")
    return worker

  def check_node(self, node: str) -> str:
    """Queued resources only: 'all' or one slice index below --num-slices."""
    if node == "all":
      return node
    if not node.isdigit() or int(node) >= self.num_slices:
      raise LaunchError(f"--node {node!r}: expected 'all' or a slice index in "
                        f"0..{self.num_slices - 1}")
    return node

  def ssh(self, command: str, *, worker: str = "all", node: str = "all") -> list[str]:
    """One shell command on the chosen workers (and, for queued resources, nodes)."""
    where = [f"--worker={self.check_worker(worker)}"]
    if self.queued:
      where.insert(0, f"--node={self.check_node(node)}")
    return self._gcloud(self._kind(), "ssh", self.name, f"--zone={self.zone}", *where,
                        f"--command={command}")

  def scp_to_all(self, local_path: str, remote_path: str) -> list[str]:
    where = ["--worker=all"] + (["--node=all"] if self.queued else [])
    return self._gcloud(self._kind(), "scp", local_path, f"{self.name}:{remote_path}",
                        f"--zone={self.zone}", *where)


def create_commands(target: TpuTarget, *, provisioning: str = "on-demand",
                    runtime_version: str | None = None,
                    valid_until_duration: str | None = None) -> list[list[str]]:
  """`tpu-vm create` (immediate, fails without capacity) or `queued-resources create` (waits)."""
  if provisioning not in PROVISIONING:
    raise LaunchError(f"provisioning {provisioning!r}; expected one of {PROVISIONING}")
  if provisioning == "best-effort" and not target.queued:
    raise LaunchError("--provisioning best-effort exists only for queued resources: add --queued")
  if valid_until_duration and not target.queued:
    raise LaunchError("--valid-until-duration applies only to queued resources: add --queued")
  version = runtime_version or target.tpu.generation.runtime_version
  flags = [f"--zone={target.zone}", f"--accelerator-type={target.tpu.accelerator_type}"]
  capacity = [] if provisioning == "on-demand" else [f"--{provisioning}"]
  if not target.queued:
    return [target._gcloud("tpu-vm", "create", target.name, *flags, f"--version={version}",
                           *capacity)]
  nodes = ([f"--node-id={target.name}"] if target.num_slices == 1 else
           [f"--node-count={target.num_slices}", f"--node-prefix={target.name}"])
  until = [f"--valid-until-duration={valid_until_duration}"] if valid_until_duration else []
  # --best-effort is only in the alpha track of gcloud.
  return [target._gcloud("queued-resources", "create", target.name, *flags,
                         f"--runtime-version={version}", *nodes, *capacity, *until,
                         alpha=provisioning == "best-effort")]


def source_tarball_command(repo_dir: str, tarball: str) -> list[str]:
  """Packs the working tree (uncommitted edits included, caches and runs excluded)."""
  excludes = [f"--exclude={pattern}" for pattern in SOURCE_EXCLUDES]
  return ["tar", "-czf", tarball, *excludes, "-C", repo_dir, "."]


def bootstrap_script(*, git_url: str | None = None, git_ref: str = "main") -> str:
  """The idempotent install every worker runs: sources, a venv, the project with its `tpu` extra."""
  q = shlex.quote
  if git_url:
    fetch = (f"if [ -d {REMOTE_DIR}/.git ]; then git -C {REMOTE_DIR} fetch --depth 1 origin "
             f"{q(git_ref)} && git -C {REMOTE_DIR} checkout --force FETCH_HEAD; "
             f"else git clone --depth 1 --branch {q(git_ref)} {q(git_url)} {REMOTE_DIR}; fi")
  else:
    fetch = (f"mkdir -p {REMOTE_DIR} && tar -xzf {SOURCE_TARBALL} -C {REMOTE_DIR} && "
             f"rm -f {SOURCE_TARBALL}")
  return "; ".join([
      "set -e",
      fetch,
      f"[ -x {REMOTE_VENV}/bin/python ] || python3 -m venv {REMOTE_VENV}",
      f"{REMOTE_VENV}/bin/pip install --quiet --upgrade pip",
      f"{REMOTE_VENV}/bin/pip install --quiet -e './{REMOTE_DIR}[tpu]'",
      f"{REMOTE_VENV}/bin/python -c 'import aomni_jax, jax; print(\"aomni_jax ready, jax\", "
      f"jax.__version__)'",
  ])


def default_tarball_path() -> str:
  """Where the source tarball is staged before `scp`: this machine's temp directory."""
  return os.path.join(tempfile.gettempdir(), SOURCE_TARBALL)


def setup_commands(target: TpuTarget, *, repo_dir: str = ".", git_url: str | None = None,
                   git_ref: str = "main", local_tarball: str | None = None
                   ) -> list[list[str]]:
  """Copy (or clone) the project to every worker and install it there."""
  local_tarball = local_tarball or default_tarball_path()
  if git_url is not None and not re.fullmatch(r"(https://|git@|ssh://)\S+", git_url):
    raise LaunchError(f"--git-url {git_url!r}: expected an https://, ssh:// or git@ URL")
  commands = []
  if git_url is None:
    commands += [source_tarball_command(repo_dir, local_tarball),
                 target.scp_to_all(local_tarball, SOURCE_TARBALL)]
  commands.append(target.ssh(bootstrap_script(git_url=git_url, git_ref=git_ref)))
  return commands


def check_run_name(run_name: str) -> str:
  if not _RUN_NAME_RE.fullmatch(run_name or ""):
    raise LaunchError(f"run name {run_name!r}: expected letters, digits, '.', '_' or '-' "
                      f"(at most 128), starting with a letter or digit")
  return run_name


def run_workdir(target: TpuTarget, workdir: str, run_name: str) -> str:
  """Where the run writes checkpoints and logs: `<workdir>/<run_name>`, on GCS for multi-host."""
  if not workdir:
    raise LaunchError("missing --workdir, e.g. gs://my-bucket/aomni_runs")
  if workdir.startswith("gs://"):
    if not _GCS_RE.fullmatch(workdir):
      raise LaunchError(f"--workdir {workdir!r} is not a gs://bucket/path URL")
  elif target.workers * target.num_slices > 1:
    raise LaunchError(f"--workdir {workdir!r}: {target.tpu.name} x{target.num_slices} has "
                      f"{target.workers * target.num_slices} hosts, which must share one "
                      f"checkpoint directory; use a gs:// bucket")
  return f"{workdir.rstrip('/')}/{check_run_name(run_name)}"


def _parse_env(items: Sequence[str]) -> dict[str, str]:
  env = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not _ENV_KEY_RE.fullmatch(key):
      raise LaunchError(f"--env {item!r}: expected NAME=value")
    env[key] = value
  return env


def run_environment(workdir: str, run_name: str, *, coordinator_port: int | None = None,
                    compilation_cache: str | None = None, libtpu_args: str | None = None,
                    extra: Sequence[str] = ()) -> dict[str, str]:
  """Environment of the training process on every worker; `extra` (NAME=value) wins."""
  env = {"AOMNI_RUN_NAME": run_name, "AOMNI_WORKDIR": workdir}
  if coordinator_port is not None:
    if not 1 <= coordinator_port <= 65535:
      raise LaunchError(f"--coordinator-port {coordinator_port} is not a TCP port (1-65535)")
    # Read by jax.distributed's Cloud TPU auto-detection; useful when a firewall only opens
    # an older default port (8476) on multislice.
    env["JAX_COORDINATOR_PORT"] = str(coordinator_port)
  if compilation_cache:
    env["JAX_COMPILATION_CACHE_DIR"] = compilation_cache
  if libtpu_args:
    env["LIBTPU_INIT_ARGS"] = libtpu_args
  env.update(_parse_env(extra))
  return env


def run_commands(target: TpuTarget, command: Sequence[str], *, run_name: str,
                 env: Mapping[str, str], attach: bool = False) -> list[list[str]]:
  """Starts `command` in the project directory on every worker of every slice at once.

  Detached by default (nohup, own process group, log and pid under ~/aomni_runs), so the job
  survives a dropped ssh connection; `attach` streams it instead and stops with the terminal.
  """
  if not command:
    raise LaunchError("missing command to run (give it after --), e.g. -- aomni-train "
                      "--config configs/audio_omni.py")
  check_run_name(run_name)
  q = shlex.quote
  exports = " ".join(f"{k}={q(v)}" for k, v in sorted(env.items()))
  log, pid = f"$HOME/{RUNS_DIR}/{run_name}.log", f"$HOME/{RUNS_DIR}/{run_name}.pid"
  program = shlex.join(command)
  prefix = (f"set -e; mkdir -p $HOME/{RUNS_DIR}; cd $HOME/{REMOTE_DIR}; "
            f"export PATH=$HOME/{REMOTE_VENV}/bin:$PATH {exports}; ")
  if attach:
    script = prefix + f"{program} 2>&1 | tee {log}"
  else:
    script = (prefix + f"nohup setsid {program} > {log} 2>&1 < /dev/null & echo $! > {pid}; "
              f"echo started {q(run_name)} on $(hostname) pid $(cat {pid})")
  return [target.ssh(script)]


def logs_commands(target: TpuTarget, run_name: str, *, worker: str = "0", node: str = "0",
                  lines: int = 200) -> list[list[str]]:
  """Follows one worker's log (worker 0 of slice 0 by default: it logs the metrics)."""
  log = f"$HOME/{RUNS_DIR}/{check_run_name(run_name)}.log"
  return [target.ssh(f"tail -n {int(lines)} -F {log}", worker=worker, node=node)]


def stop_commands(target: TpuTarget, run_name: str) -> list[list[str]]:
  """Ends a detached run on every worker: its process group, by the pid it recorded."""
  pid = f"$HOME/{RUNS_DIR}/{check_run_name(run_name)}.pid"
  return [target.ssh(f"if [ -f {pid} ]; then kill -TERM -- -$(cat {pid}) 2>/dev/null "
                     f"&& echo stopped on $(hostname) || echo not running on $(hostname); "
                     f"rm -f {pid}; fi")]


def status_commands(target: TpuTarget) -> list[list[str]]:
  return [target._gcloud(target._kind(), "describe", target.name, f"--zone={target.zone}")]


def teardown_commands(target: TpuTarget, *, wait: bool = False) -> list[list[str]]:
  """Deletes the TPU VM, or the queued resource with all its nodes (`--force`)."""
  flags = [f"--zone={target.zone}", "--quiet"] + ([] if wait else ["--async"])
  if target.queued:
    flags.insert(1, "--force")
  return [target._gcloud(target._kind(), "delete", target.name, *flags)]
