"""gcloud command lines for the life of a Cloud TPU training job: create, set up, check, run, logs,
stop, status, tear down.

Every function returns argv lists and runs nothing, so the exact commands can be printed
(`--dry-run`) and tested without credentials. A target is either a single TPU VM slice
(`gcloud compute tpus tpu-vm ...`) or a queued resource (`gcloud compute tpus queued-resources
...`), which Cloud TPU requires for Multislice and offers for capacity that is not there yet.
Multi-host slices need the same command on every worker at once (`--worker=all`): a single
worker blocks forever in JAX's distributed initialisation waiting for the others. What runs on
the workers is in `remote.py`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from typing import Mapping, Sequence

from aomni_jax.cli.errors import UserError
from aomni_jax.launch import remote
from aomni_jax.launch.slices import TpuSlice

PROVISIONING = ("on-demand", "spot", "reserved", "best-effort")
# Paths that never travel to the workers: VCS data, local runs, caches, build outputs.
SOURCE_EXCLUDES = (".git", "runs", ".cache", ".whl", "build", "dist", "*.egg-info",
                   "__pycache__", ".pytest_cache", "*.pyc", ".venv")

_NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_ZONE_RE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]")
_PROJECT_RE = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")
_RUN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_GCS_RE = re.compile(r"gs://[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9](/.*)?")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SELECTOR_RE = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")


class LaunchError(UserError, ValueError):
  """An argument that would make gcloud or the job fail later."""


@dataclasses.dataclass(frozen=True)
class SshAccess:
  """How gcloud reaches the workers (ssh and scp), for networks without external IPs."""

  internal_ip: bool = False  # connect to the workers' internal IPs (from inside the VPC)
  tunnel_through_iap: bool = False  # through Identity-Aware Proxy (no external IPs, from outside)
  batch_size: int | None = None  # workers gcloud connects to at once (its default: 64 / all)
  ssh_flags: tuple[str, ...] = ()  # passed to ssh and scp, e.g. "-o ServerAliveInterval=30"

  def __post_init__(self):
    if self.internal_ip and self.tunnel_through_iap:
      raise LaunchError("--internal-ip and --tunnel-through-iap exclude each other: IAP is for "
                        "reaching workers without external IPs from outside their network")
    if self.batch_size is not None and self.batch_size < 1:
      raise LaunchError(f"--ssh-batch-size must be >= 1, got {self.batch_size}")

  @property
  def needs_alpha_for_tpu_vm(self) -> bool:
    """`tpu-vm ssh/scp` take IAP and batch size only in gcloud's alpha track."""
    return self.tunnel_through_iap or self.batch_size is not None

  def flags(self, copy: bool = False) -> list[str]:
    flags = (["--internal-ip"] if self.internal_ip else []) + (
        ["--tunnel-through-iap"] if self.tunnel_through_iap else [])
    if self.batch_size is not None:
      flags.append(f"--batch-size={self.batch_size}")
    flag_name = "--scp-flag" if copy else "--ssh-flag"
    return flags + [f"{flag_name}={flag}" for flag in self.ssh_flags]


@dataclasses.dataclass(frozen=True)
class TpuTarget:
  """Which TPU a command talks to."""

  name: str
  zone: str
  tpu: TpuSlice
  num_slices: int = 1
  queued: bool = False  # a queued resource (required for num_slices > 1)
  project: str | None = None
  access: SshAccess = SshAccess()
  gcloud_args: tuple[str, ...] = ()  # appended to every gcloud command (e.g. --verbosity=debug)

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
    bad = [a for a in self.gcloud_args if not a.startswith("--")]
    if bad:
      raise LaunchError(f"--gcloud-arg {bad[0]!r}: expected a gcloud flag such as "
                        f"--verbosity=debug (write flag and value as one argument)")

  @property
  def workers(self) -> int:
    """TPU VMs per slice."""
    return self.tpu.hosts

  def _gcloud(self, *args: str, alpha: bool = False) -> list[str]:
    cmd = ["gcloud", *(["alpha"] if alpha else []), "compute", "tpus", *args]
    return cmd + ([f"--project={self.project}"] if self.project else []) + list(self.gcloud_args)

  def _kind(self) -> str:
    return "queued-resources" if self.queued else "tpu-vm"

  def _remote_alpha(self) -> bool:
    return not self.queued and self.access.needs_alpha_for_tpu_vm

  def check_worker(self, worker: str) -> str:
    """'all', or indices and ranges as gcloud takes them (0,2 or 1-3), below the worker count."""
    return _check_selector("--worker", worker, self.workers, f"{self.tpu.name} has "
                           f"{self.workers} worker(s) (0..{self.workers - 1})")

  def check_node(self, node: str) -> str:
    """Queued resources only: 'all', or slice indices and ranges below --num-slices."""
    return _check_selector("--node", node, self.num_slices, f"there are {self.num_slices} "
                           f"slice(s) (0..{self.num_slices - 1})")

  def ssh(self, command: str, *, worker: str = "all", node: str = "all") -> list[str]:
    """One shell command on the chosen workers (and, for queued resources, nodes)."""
    where = [f"--worker={self.check_worker(worker)}"]
    if self.queued:
      where.insert(0, f"--node={self.check_node(node)}")
    return self._gcloud(self._kind(), "ssh", self.name, f"--zone={self.zone}", *where,
                        *self.access.flags(), f"--command={command}",
                        alpha=self._remote_alpha())

  def scp_to_all(self, local_path: str, remote_path: str) -> list[str]:
    where = ["--worker=all"] + (["--node=all"] if self.queued else [])
    return self._gcloud(self._kind(), "scp", local_path, f"{self.name}:{remote_path}",
                        f"--zone={self.zone}", *where, *self.access.flags(copy=True),
                        alpha=self._remote_alpha())


def _check_selector(flag: str, value: str, count: int, what: str) -> str:
  if value == "all":
    return value
  if not _SELECTOR_RE.fullmatch(value):
    raise LaunchError(f"{flag} {value!r}: expected 'all', an index, a comma list or a range "
                      f"like 0,2 or 1-3")
  bad = []
  for part in value.split(","):
    first, _, last = part.partition("-")
    if last and int(last) < int(first):
      raise LaunchError(f"{flag} {value!r}: range {part} runs backwards")
    bad += [int(n) for n in (first, last) if n and int(n) >= count]
  if bad:
    raise LaunchError(f"{flag} {value!r}: {what}; {bad} out of range")
  return value


@dataclasses.dataclass(frozen=True)
class VmOptions:
  """Network and identity of the TPU VMs, fixed at creation."""

  network: str | None = None
  subnetwork: str | None = None
  service_account: str | None = None  # e.g. trainer@PROJECT.iam.gserviceaccount.com
  scopes: str | None = None  # comma list, e.g. cloud-platform
  reservation: str | None = None  # a specific reservation (queued resources, gcloud alpha)

  def flags(self, internal_ips: bool) -> list[str]:
    values = {"network": self.network, "subnetwork": self.subnetwork,
              "service-account": self.service_account, "scopes": self.scopes,
              "reservation": self.reservation}
    return (["--internal-ips"] if internal_ips else []) + [
        f"--{name}={value}" for name, value in values.items() if value]


def create_commands(target: TpuTarget, *, provisioning: str = "on-demand",
                    runtime_version: str | None = None,
                    valid_until_duration: str | None = None,
                    vm: VmOptions = VmOptions()) -> list[list[str]]:
  """`tpu-vm create` (immediate, fails without capacity) or `queued-resources create` (waits).

  `--internal-ip` (in `target.access`) also creates the VMs without external IPs.
  """
  if provisioning not in PROVISIONING:
    raise LaunchError(f"provisioning {provisioning!r}; expected one of {PROVISIONING}")
  if provisioning == "best-effort" and not target.queued:
    raise LaunchError("--provisioning best-effort exists only for queued resources: add --queued")
  if valid_until_duration and not target.queued:
    raise LaunchError("--valid-until-duration applies only to queued resources: add --queued")
  if vm.reservation and not target.queued:
    raise LaunchError("--reservation NAME exists only for queued resources: add --queued (or "
                      "use --provisioning reserved to take any matching reservation)")
  if vm.reservation and provisioning != "on-demand":
    raise LaunchError(f"--reservation {vm.reservation} is reserved capacity by itself; drop "
                      f"--provisioning {provisioning}")
  version = runtime_version or target.tpu.generation.runtime_version
  flags = [f"--zone={target.zone}", f"--accelerator-type={target.tpu.accelerator_type}"]
  capacity = [] if provisioning == "on-demand" else [f"--{provisioning}"]
  placement = vm.flags(internal_ips=target.access.internal_ip)
  if not target.queued:
    return [target._gcloud("tpu-vm", "create", target.name, *flags, f"--version={version}",
                           *capacity, *placement)]
  nodes = ([f"--node-id={target.name}"] if target.num_slices == 1 else
           [f"--node-count={target.num_slices}", f"--node-prefix={target.name}"])
  until = [f"--valid-until-duration={valid_until_duration}"] if valid_until_duration else []
  # --best-effort and --reservation exist only in the alpha track of gcloud.
  return [target._gcloud("queued-resources", "create", target.name, *flags,
                         f"--runtime-version={version}", *nodes, *capacity, *until, *placement,
                         alpha=provisioning == "best-effort" or bool(vm.reservation))]


def source_tarball_command(repo_dir: str, tarball: str) -> list[str]:
  """Packs the working tree (uncommitted edits included, caches and runs excluded)."""
  excludes = [f"--exclude={pattern}" for pattern in SOURCE_EXCLUDES]
  return ["tar", "-czf", tarball, *excludes, "-C", repo_dir, "."]


def default_tarball_path() -> str:
  """Where the source tarball is staged before `scp`: this machine's temp directory."""
  return os.path.join(tempfile.gettempdir(), remote.SOURCE_TARBALL)


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
                 target.scp_to_all(local_tarball, remote.SOURCE_TARBALL)]
  commands.append(target.ssh(remote.bootstrap_script(git_url=git_url, git_ref=git_ref)))
  return commands


def check_commands(target: TpuTarget) -> list[list[str]]:
  """Every worker prints python/jax/libtpu versions and the device counts it joined."""
  return [target.ssh(remote.check_script())]


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
                 env: Mapping[str, str], attach: bool = False,
                 startup_s: int = 15) -> list[list[str]]:
  """Starts `command` in the project directory on every worker of every slice at once.

  Detached by default (own process group, log and pid under ~/aomni_runs), so the job survives
  a dropped ssh connection, and a job that dies within `startup_s` is reported with its log
  tail; `attach` streams it and returns its exit code.
  """
  if not command:
    raise LaunchError("missing command to run (give it after --), e.g. -- aomni-train "
                      "--config configs/audio_omni.py")
  if startup_s < 1:
    raise LaunchError(f"--startup-s must be >= 1, got {startup_s}")
  script = remote.run_script(check_run_name(run_name), command, env, attach=attach,
                             startup_s=startup_s)
  return [target.ssh(script)]


def logs_commands(target: TpuTarget, run_name: str, *, worker: str = "0", node: str = "0",
                  lines: int = 200) -> list[list[str]]:
  """Follows one worker's log (worker 0 of slice 0 by default: it logs the metrics)."""
  log = f"$HOME/{remote.RUNS_DIR}/{check_run_name(run_name)}.log"
  return [target.ssh(f"tail -n {int(lines)} -F {log}", worker=worker, node=node)]


def stop_commands(target: TpuTarget, run_name: str, *, timeout_s: int = 300
                  ) -> list[list[str]]:
  """Ends a run on every worker: SIGTERM (it checkpoints), then SIGKILL after `timeout_s`."""
  if timeout_s < 0:
    raise LaunchError(f"--timeout-s must be >= 0, got {timeout_s}")
  return [target.ssh(remote.stop_script(check_run_name(run_name), timeout_s=timeout_s))]


def status_commands(target: TpuTarget) -> list[list[str]]:
  return [target._gcloud(target._kind(), "describe", target.name, f"--zone={target.zone}")]


def teardown_commands(target: TpuTarget, *, wait: bool = False) -> list[list[str]]:
  """Deletes the TPU VM, or the queued resource with all its nodes (`--force`)."""
  flags = [f"--zone={target.zone}", "--quiet"] + ([] if wait else ["--async"])
  if target.queued:
    flags.insert(1, "--force")
  return [target._gcloud(target._kind(), "delete", target.name, *flags)]
