"""The shell scripts every TPU worker runs: install, start, stop and check a job.

`tpu.py` wraps each in `gcloud ... ssh --command=...`; they also run in a local shell, which is
how the tests drive two fake workers. Layout in the worker's home directory:

    aomni_jax/          the project, replaced whole on every `setup` (deleted files do not survive)
    aomni_venv/         Python 3.12 from uv (the images ship 3.10), the project from constraints.txt
    aomni_runs/R.log    output of run R;  aomni_runs/R.pid  its process group, while it runs

A job runs in its own process group (`setsid`), so a stop reaches its data workers too. The pid
file is the lock: `run` refuses to start while any recorded job is alive, and a job that is
alive but unrecorded (an orphan holding the chips) is killed before a new one starts.
"""

from __future__ import annotations

import shlex
from typing import Mapping, Sequence

REMOTE_DIR = "aomni_jax"  # relative to the worker's home directory
REMOTE_VENV = "aomni_venv"
RUNS_DIR = "aomni_runs"  # per-run log and pid files on every worker
SOURCE_TARBALL = "aomni_jax_src.tar.gz"
CONSTRAINTS = "constraints.txt"  # the pinned lock CI installs from too
NODEPS_REQUIREMENTS = "requirements-nodeps.txt"
UV_VERSION = "0.13.9"
PYTHON_VERSION = "3.12"
UV = "$HOME/.local/bin/uv"  # where `pip install --user` and uv's own installer put it
# The TPU chips as processes hold them (v4: /dev/accel*, v5 and v6: /dev/vfio/<n>), and the lock
# libtpu leaves behind; MaxText frees them the same way before a run.
CHIP_DEVICES = ("/dev/accel*", "/dev/vfio/[0-9]*")
LIBTPU_LOCKFILE = "/tmp/libtpu_lockfile"
EXIT_RUN_IS_LIVE = 3

# `alive G`: whether process group G (or process G) has a member that is not a zombie.
# `kill -0` is not enough: an exited job stays a zombie until its parent reaps it.
_ALIVE = ("alive() { ps -e -o pid=,pgid=,stat= | awk -v g=\"$1\" "
          "'($1 == g || $2 == g) && $3 !~ /^Z/ {found = 1} END {exit !found}'; }")
# `running P`: whether process P itself is running (not exited, not a zombie).
_RUNNING = "running() { ps -o stat= -p \"$1\" | grep -qv '^Z'; }"
# Root on the workers without a password prompt when there is sudo (chips held by another user).
_SUDO = 'SUDO=""; if [ "$(id -u)" != 0 ] && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi'


def _runs_path(run_name: str, suffix: str) -> str:
  return f"$HOME/{RUNS_DIR}/{run_name}.{suffix}"


def refuse_live_runs_script() -> str:
  """Exits with EXIT_RUN_IS_LIVE naming the run when a recorded job is alive; drops stale pids."""
  return (f'for pidfile in $HOME/{RUNS_DIR}/*.pid; do [ -e "$pidfile" ] || continue; '
          'run=$(basename "$pidfile" .pid); if alive "$(cat "$pidfile")"; then '
          'echo "error: run $run is still running on $(hostname) (process group '
          '$(cat "$pidfile")); stop it first: aomni-launch tpu stop --run-name $run" >&2; '
          f'exit {EXIT_RUN_IS_LIVE}; fi; rm -f "$pidfile"; done')


def free_chips_script() -> str:
  """Kills whatever still holds the TPU chips (CHIP_DEVICES) and removes LIBTPU_LOCKFILE.

  Without this a killed or orphaned job keeps the chips and the next start fails with "TPU
  already in use". Runs only after `refuse_live_runs_script`, so it never hits a recorded job.
  """
  globs, lockfile = " ".join(CHIP_DEVICES), LIBTPU_LOCKFILE
  return "; ".join([
      _SUDO,
      f"holders=$($SUDO lsof -t {globs} 2>/dev/null | sort -u | tr '\\n' ' ')",
      'if [ -n "$holders" ]; then echo "freeing the TPU chips on $(hostname): killing '
      'process(es) $holders"; $SUDO kill -9 $holders 2>/dev/null || true; '
      f'for _ in $(seq 50); do [ -z "$($SUDO lsof -t {globs} 2>/dev/null)" ] && break; '
      "sleep 0.2; done; fi",
      f"$SUDO rm -f {lockfile}",
  ])


def bootstrap_script(*, git_url: str | None = None, git_ref: str = "main") -> str:
  """Installs the project on one worker from scratch: uv, Python 3.12, sources, venv, packages.

  Sources and venv are rebuilt every time (uv's cache makes that quick), so a worker set up
  today equals one set up last week: same tree, same pinned versions.
  """
  q = shlex.quote
  new_dir = f"{REMOTE_DIR}.new"
  if git_url:
    fetch = f"git clone --quiet --depth 1 --branch {q(git_ref)} {q(git_url)} {new_dir}"
  else:
    fetch = (f"mkdir {new_dir} && tar -xzf {SOURCE_TARBALL} -C {new_dir} && "
             f"rm -f {SOURCE_TARBALL}")
  python = f"{REMOTE_VENV}/bin/python"
  return "; ".join([
      "set -e",
      _ALIVE,
      f"mkdir -p $HOME/{RUNS_DIR}",
      refuse_live_runs_script(),  # a running job would have its code replaced under it
      "cd $HOME",
      f'if ! "{UV}" --version 2>/dev/null | grep -qE "^uv {UV_VERSION}( |$)"; then '
      f"python3 -m pip install --quiet --user uv=={UV_VERSION} || "
      f"curl -LsSf https://astral.sh/uv/{UV_VERSION}/install.sh | "
      "env UV_NO_MODIFY_PATH=1 sh; fi",
      f"rm -rf {new_dir}",
      fetch,
      f"rm -rf {REMOTE_DIR} && mv {new_dir} {REMOTE_DIR}",
      f"rm -rf {REMOTE_VENV}",
      f'"{UV}" venv --quiet --python {PYTHON_VERSION} {REMOTE_VENV}',
      f'"{UV}" pip install --quiet --python {python} -c {REMOTE_DIR}/{CONSTRAINTS} '
      f"-e './{REMOTE_DIR}[tpu]'",
      f'"{UV}" pip install --quiet --python {python} --no-deps '
      f"-r {REMOTE_DIR}/{NODEPS_REQUIREMENTS}",
      f"{python} -c 'import sys, aomni_jax, jax; print(\"aomni_jax ready on\", "
      f"__import__(\"socket\").gethostname(), \"python\", sys.version.split()[0], \"jax\", "
      f"jax.__version__)'",
  ])


def _job_prefix(env: Mapping[str, str]) -> str:
  exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
  return (f"cd $HOME/{REMOTE_DIR}; export PATH=$HOME/{REMOTE_VENV}/bin:$PATH"
          + (f" {exports}" if exports else ""))


def run_script(run_name: str, command: Sequence[str], env: Mapping[str, str], *,
               attach: bool = False, startup_s: int = 15) -> str:
  """Starts the job on this worker, after refusing a live run and freeing the chips.

  Either way the job runs under `nohup setsid` with its output in the log and its pid
  recorded. Detached: watches the first `startup_s` seconds and fails with the log tail when
  the job dies in them (a bad flag, a missing file, chips in use) instead of printing
  "started". Attached: streams the log, passes a hang-up or Ctrl-C on as SIGTERM, and exits
  with the job's code; `stop` works from another terminal too.
  """
  log, pidfile = _runs_path(run_name, "log"), _runs_path(run_name, "pid")
  head = ["set -e", _ALIVE, _RUNNING, f"mkdir -p $HOME/{RUNS_DIR}", refuse_live_runs_script(),
          free_chips_script(), _job_prefix(env),
          f": > {log}",  # exists before `tail` looks for it
          f"nohup setsid {shlex.join(command)} >> {log} 2>&1 < /dev/null & pid=$!",
          f"echo $pid > {pidfile}"]
  if attach:
    body = [
        f"tail -n +1 -f --pid=$pid {log} & tailer=$!",
        'trap \'kill -TERM -- -$pid 2>/dev/null\' HUP INT TERM',  # ends with this session
        # A trapped signal interrupts `wait`; wait again until the job itself has exited.
        "while :; do rc=0; wait $pid || rc=$?; kill -0 $pid 2>/dev/null || break; done",
        "wait $tailer || true",
        f"rm -f {pidfile}",
        f'echo "{run_name} exited with code $rc on $(hostname)"',
        "exit $rc",
    ]
  else:
    body = [
        f"for _ in $(seq {int(startup_s)}); do sleep 1; running $pid || break; done",
        f'if running $pid; then echo "started {run_name} on $(hostname): process group $pid, '
        f'log {log}"; exit 0; fi',
        f"rc=0; wait $pid || rc=$?; rm -f {pidfile}",
        f'if [ $rc = 0 ]; then echo "{run_name} finished (exit 0) within {int(startup_s)}s on '
        '$(hostname)"; exit 0; fi',
        f'echo "error: {run_name} exited with code $rc within {int(startup_s)}s on $(hostname);'
        f' last lines of {log}:" >&2',
        f"tail -n 30 {log} >&2",
        "exit 1",
    ]
  return "; ".join(head + body)


def stop_script(run_name: str, *, timeout_s: int = 300) -> str:
  """SIGTERM to the job's process group, up to `timeout_s` for it to save and exit, then SIGKILL.

  The training loop checkpoints on SIGTERM (JAX's preemption notifier agrees on the step across
  hosts), which takes a while on a pod: hence the wait before the KILL.
  """
  pidfile = _runs_path(run_name, "pid")
  timeout_s = int(timeout_s)
  return "; ".join([
      _ALIVE,
      f'if [ ! -f {pidfile} ]; then echo "{run_name} is not running on $(hostname) '
      '(no pid file)"; exit 0; fi',
      f"pid=$(cat {pidfile})",
      f'if ! alive $pid; then echo "{run_name} was not running on $(hostname)"; '
      f"rm -f {pidfile}; exit 0; fi",
      "kill -TERM -- -$pid 2>/dev/null || kill -TERM $pid 2>/dev/null || true",
      f"waited=0; while alive $pid && [ $waited -lt {timeout_s} ]; do sleep 1; "
      "waited=$((waited + 1)); done",
      f'if alive $pid; then echo "{run_name} on $(hostname): still running {timeout_s}s after '
      'SIGTERM; sending SIGKILL"; kill -KILL -- -$pid 2>/dev/null || kill -KILL $pid '
      "2>/dev/null || true; for _ in $(seq 50); do alive $pid || break; sleep 0.2; done; "
      f'else echo "stopped {run_name} on $(hostname) after ${{waited}}s"; fi',
      f'if alive $pid; then echo "error: {run_name} survived SIGKILL on $(hostname)" >&2; '
      "exit 1; fi",
      f"rm -f {pidfile}",
  ])


def check_script() -> str:
  """Reports live runs, then versions and devices (the chips only when no run holds them)."""
  return "; ".join([
      _ALIVE,
      "busy=",
      f'for pidfile in $HOME/{RUNS_DIR}/*.pid; do [ -e "$pidfile" ] || continue; '
      'if alive "$(cat "$pidfile")"; then busy=1; echo "$(hostname): run '
      '$(basename "$pidfile" .pid) is running (process group $(cat "$pidfile"))"; fi; done',
      _job_prefix({}),
      "python -m aomni_jax.launch.check ${busy:+--versions-only}",
  ])
