"""`aomni-launch tpu|gpu ...`: start training on Cloud TPU VMs or GPU hosts.

    aomni-launch tpu create --name N --zone Z --slice v5p-64 [--queued --num-slices 2]
                            [--provisioning spot|reserved|best-effort]
    aomni-launch tpu setup  ... [--git-url URL --git-ref REF]   # uv, Python 3.12, constraints.txt
    aomni-launch tpu check  ...                                 # versions + devices per worker
    aomni-launch tpu run    ... --run-name R --workdir gs://bucket/runs -- aomni-train --config C
    aomni-launch tpu logs|stop --run-name R;  aomni-launch tpu status|teardown
    aomni-launch gpu --nnodes 2 --node-rank 0 --coordinator 10.0.0.2:1234 [--mode gpu] -- CMD

Every TPU subcommand validates its arguments first and prints the gcloud commands it runs;
`--dry-run` only prints them. The TPU target flags default to AOMNI_TPU_NAME, AOMNI_TPU_ZONE,
AOMNI_TPU_SLICE, AOMNI_TPU_NUM_SLICES, AOMNI_TPU_QUEUED, AOMNI_GCP_PROJECT, AOMNI_TPU_INTERNAL_IP
and AOMNI_TPU_IAP, so that one set of exports serves every step. See launch/README.md.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shlex
import subprocess
import sys
from typing import Sequence

from aomni_jax.cli.errors import ArgumentParser, console
from aomni_jax.launch import gpu, tpu
from aomni_jax.launch.slices import parse_slice

TPU_ACTIONS = ("create", "setup", "check", "run", "logs", "stop", "status", "teardown")
# The checkout this module runs from (source tree or editable install): what `setup` copies.
PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _env_flag(name: str) -> bool:
  return os.environ.get(name, "").lower() in ("1", "true", "yes")


def _add_target_flags(parser: argparse.ArgumentParser) -> None:
  env = os.environ.get
  parser.add_argument("--name", default=env("AOMNI_TPU_NAME", ""),
                      help="TPU VM / queued resource name [AOMNI_TPU_NAME]")
  parser.add_argument("--zone", default=env("AOMNI_TPU_ZONE", ""),
                      help="e.g. us-east5-a [AOMNI_TPU_ZONE]")
  parser.add_argument("--slice", default=env("AOMNI_TPU_SLICE", ""),
                      help="slice type, e.g. v5p-64, v4-32, v5e-16 (= v5litepod-16), v6e-64 "
                           "[AOMNI_TPU_SLICE]")
  parser.add_argument("--num-slices", type=int, default=int(env("AOMNI_TPU_NUM_SLICES", "1")),
                      help="Multislice over DCN; needs --queued [AOMNI_TPU_NUM_SLICES]")
  parser.add_argument("--queued", action="store_true", default=_env_flag("AOMNI_TPU_QUEUED"),
                      help="use a queued resource instead of a plain TPU VM [AOMNI_TPU_QUEUED=1]")
  parser.add_argument("--project", default=env("AOMNI_GCP_PROJECT") or None,
                      help="Google Cloud project (default: gcloud's) [AOMNI_GCP_PROJECT]")
  access = parser.add_argument_group("reaching the workers")
  access.add_argument("--internal-ip", action="store_true",
                      default=_env_flag("AOMNI_TPU_INTERNAL_IP"),
                      help="ssh/scp to internal IPs (from inside the VPC); create: VMs without "
                           "external IPs [AOMNI_TPU_INTERNAL_IP=1]")
  access.add_argument("--tunnel-through-iap", action="store_true",
                      default=_env_flag("AOMNI_TPU_IAP"),
                      help="ssh/scp through Identity-Aware Proxy [AOMNI_TPU_IAP=1]")
  access.add_argument("--ssh-batch-size", type=int, default=None,
                      help="workers gcloud connects to at once")
  access.add_argument("--ssh-flag", action="append", default=[], metavar="FLAG",
                      help="extra ssh (and scp) flag, e.g. '-o ServerAliveInterval=30'")
  access.add_argument("--gcloud-arg", action="append", default=[], metavar="--FLAG=VALUE",
                      help="appended to every gcloud command; write it as one argument, e.g. "
                           "--gcloud-arg=--verbosity=debug")
  parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")


def _tpu_parser(sub) -> None:
  tpu_parser = sub.add_parser("tpu", help="Cloud TPU VMs and pods through gcloud")
  actions = tpu_parser.add_subparsers(dest="action", required=True)
  parsers = {a: actions.add_parser(a) for a in TPU_ACTIONS}
  for parser in parsers.values():
    _add_target_flags(parser)
  create = parsers["create"]
  create.add_argument("--provisioning", choices=tpu.PROVISIONING, default="on-demand",
                      help="best-effort needs --queued")
  create.add_argument("--runtime-version", default=None,
                      help="TPU software version (default: the one Google recommends per "
                           "generation, e.g. v2-alpha-tpuv5 for v5p)")
  create.add_argument("--valid-until-duration", default=None,
                      help="queued resources: give up after this long, e.g. 6h")
  create.add_argument("--network", default=None, help="VPC network (gcloud: 'default')")
  create.add_argument("--subnetwork", default=None)
  create.add_argument("--service-account", default=None,
                      help="the VMs' identity; it needs read/write on the gs:// bucket")
  create.add_argument("--scopes", default=None, help="e.g. cloud-platform")
  create.add_argument("--reservation", default=None,
                      help="consume this reservation (queued resources; gcloud alpha)")
  setup = parsers["setup"]
  setup.add_argument("--repo-dir", default=str(PROJECT_ROOT),
                     help="local project to copy (default: this checkout)")
  setup.add_argument("--git-url", default=None, help="clone this repository instead of copying")
  setup.add_argument("--git-ref", default="main")
  run = parsers["run"]
  run.add_argument("--run-name", required=True)
  run.add_argument("--workdir", required=True,
                   help="base directory; the run writes to <workdir>/<run-name> (gs:// for "
                        "multi-host). In the command, {workdir} and {run_name} are replaced.")
  run.add_argument("--coordinator-port", type=int, default=None,
                   help="JAX coordinator port (e.g. 8476 where a firewall only opens that one)")
  run.add_argument("--compilation-cache", default=None,
                   help="persistent XLA compilation cache directory, e.g. gs://bucket/jax_cache")
  run.add_argument("--libtpu-args", default=None, help="LIBTPU_INIT_ARGS for every worker")
  run.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
  run.add_argument("--attach", action="store_true",
                   help="stream output here and exit with the job's code (the job belongs to "
                        "the ssh session; `stop` works from another terminal)")
  run.add_argument("--startup-s", type=int, default=15,
                   help="detached: watch this long and report a job that dies in it")
  run.add_argument("command", nargs=argparse.REMAINDER, help="-- program and arguments")
  for name in ("logs", "stop"):
    parsers[name].add_argument("--run-name", required=True)
  parsers["stop"].add_argument("--timeout-s", type=int, default=300,
                               help="after SIGTERM, wait this long for the checkpoint save, "
                                    "then SIGKILL")
  parsers["logs"].add_argument("--worker", default="0", help="index, list or range (1-3)")
  parsers["logs"].add_argument("--node", default="0", help="slice index (queued resources)")
  parsers["logs"].add_argument("--lines", type=int, default=200)
  parsers["teardown"].add_argument("--wait", action="store_true",
                                   help="wait for the deletion instead of --async")


def _gpu_parser(sub) -> None:
  env = os.environ.get
  parser = sub.add_parser("gpu", help="one JAX process per host or per GPU on this node")
  parser.add_argument("--nnodes", type=int, default=int(env("NNODES", "1")), help="[NNODES]")
  parser.add_argument("--node-rank", type=int, default=int(env("NODE_RANK", "0")),
                      help="[NODE_RANK]")
  parser.add_argument("--gpus-per-node", type=int,
                      default=int(env("GPUS_PER_NODE", "0")) or None,
                      help="[GPUS_PER_NODE] (default: nvidia-smi's count)")
  parser.add_argument("--coordinator", default=env("JAX_COORDINATOR_ADDRESS"),
                      help="host:port of node 0 [JAX_COORDINATOR_ADDRESS]")
  parser.add_argument("--mode", choices=gpu.MODES, default="host",
                      help="host: one process drives all local GPUs; gpu: one process per GPU")
  parser.add_argument("--dry-run", action="store_true",
                      help="print each process's environment and command, run nothing")
  parser.add_argument("command", nargs=argparse.REMAINDER,
                      help="-- program and arguments; {process_id}, {num_processes}, "
                           "{coordinator} and {local_rank} are replaced per process")


def build_parser() -> argparse.ArgumentParser:
  parser = ArgumentParser(prog="aomni-launch", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="platform", required=True)
  _tpu_parser(sub)
  _gpu_parser(sub)
  return parser


def _strip_dashes(command: Sequence[str]) -> list[str]:
  return list(command[1:] if command and command[0] == "--" else command)


def _substitute(command: Sequence[str], values: dict[str, str]) -> list[str]:
  out = []
  for arg in command:
    for key, value in values.items():
      arg = arg.replace("{" + key + "}", value)
    out.append(arg)
  return out


def tpu_commands(args: argparse.Namespace) -> list[list[str]]:
  """The gcloud (and tar) commands for one TPU action; raises LaunchError/SliceError."""
  if not args.slice:
    raise tpu.LaunchError("missing --slice (or AOMNI_TPU_SLICE), e.g. v5p-64")
  access = tpu.SshAccess(internal_ip=args.internal_ip, tunnel_through_iap=args.tunnel_through_iap,
                         batch_size=args.ssh_batch_size, ssh_flags=tuple(args.ssh_flag))
  target = tpu.TpuTarget(name=args.name, zone=args.zone, tpu=parse_slice(args.slice),
                         num_slices=args.num_slices, queued=args.queued, project=args.project,
                         access=access, gcloud_args=tuple(args.gcloud_arg))
  if args.action == "create":
    vm = tpu.VmOptions(network=args.network, subnetwork=args.subnetwork,
                       service_account=args.service_account, scopes=args.scopes,
                       reservation=args.reservation)
    return tpu.create_commands(target, provisioning=args.provisioning,
                               runtime_version=args.runtime_version,
                               valid_until_duration=args.valid_until_duration, vm=vm)
  if args.action == "setup":
    return tpu.setup_commands(target, repo_dir=args.repo_dir, git_url=args.git_url,
                              git_ref=args.git_ref)
  if args.action == "check":
    return tpu.check_commands(target)
  if args.action == "run":
    workdir = tpu.run_workdir(target, args.workdir, args.run_name)
    env = tpu.run_environment(workdir, args.run_name, coordinator_port=args.coordinator_port,
                              compilation_cache=args.compilation_cache,
                              libtpu_args=args.libtpu_args, extra=args.env)
    command = _substitute(_strip_dashes(args.command),
                          {"workdir": workdir, "run_name": args.run_name})
    return tpu.run_commands(target, command, run_name=args.run_name, env=env, attach=args.attach,
                            startup_s=args.startup_s)
  if args.action == "logs":
    return tpu.logs_commands(target, args.run_name, worker=args.worker, node=args.node,
                             lines=args.lines)
  if args.action == "stop":
    return tpu.stop_commands(target, args.run_name, timeout_s=args.timeout_s)
  if args.action == "status":
    return tpu.status_commands(target)
  return tpu.teardown_commands(target, wait=args.wait)


def _run_tpu(args: argparse.Namespace) -> int:
  """Runs the action's commands in order; a failing one ends it with its exit code."""
  commands = tpu_commands(args)
  for command in commands:
    print(("" if args.dry_run else "+ ") + shlex.join(command), flush=True)
    if args.dry_run:
      continue
    code = subprocess.run(command, check=False).returncode
    if code:
      print(f"aomni-launch: {shlex.join(command[:5])} ... exited with code {code}",
            file=sys.stderr)
      return code
  return 0


def gpu_plan(args: argparse.Namespace) -> list[tuple[dict[str, str], list[str]]]:
  """(added environment, argv) of every process this node starts; raises GpuLaunchError."""
  command = _strip_dashes(args.command)
  if not command:
    raise gpu.GpuLaunchError("missing command to run (give it after --)")
  gpus = args.gpus_per_node or gpu.detect_gpu_count()
  if not gpus:
    raise gpu.GpuLaunchError("no GPU count: pass --gpus-per-node (or GPUS_PER_NODE); "
                             "nvidia-smi found none")
  coordinator = args.coordinator
  if not coordinator and args.nnodes == 1 and args.mode == "gpu" and gpus > 1:
    coordinator = gpu.local_coordinator()
  job = gpu.GpuJob(nnodes=args.nnodes, node_rank=args.node_rank, gpus_per_node=gpus,
                   coordinator=coordinator, mode=args.mode)
  plan = []
  for env in gpu.process_environments(job):
    values = {"process_id": env.get("JAX_PROCESS_ID", "0"),
              "num_processes": env.get("JAX_NUM_PROCESSES", "1"),
              "coordinator": env.get("JAX_COORDINATOR_ADDRESS", ""),
              "local_rank": env.get("LOCAL_RANK", "0")}
    plan.append((env, _substitute(command, values)))
  return plan


def _run_gpu(args: argparse.Namespace) -> int:
  plan = gpu_plan(args)
  for env, command in plan:
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    print(f"{'' if args.dry_run else '+ '}env {exports} {shlex.join(command)}", flush=True)
  if args.dry_run:
    return 0
  return gpu.spawn(plan)


@console("aomni-launch")
def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  return _run_tpu(args) if args.platform == "tpu" else _run_gpu(args)


if __name__ == "__main__":
  sys.exit(main())
