"""`python -m aomni_jax.launch.check`: what one worker runs, in one line (`aomni-launch tpu check`).

Run on every worker at once, it also starts the multi-process runtime, so the device counts it
prints are the pod's: a worker that cannot reach the others fails here, not in the first step.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import socket
import sys

from aomni_jax.cli.errors import console


def _version(package: str) -> str:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return "absent"


def versions() -> dict[str, str]:
  return {"python": platform.python_version(),
          **{name: _version(name) for name in ("jax", "jaxlib", "libtpu", "gcsfs")}}


def devices() -> dict[str, str]:
  """Starts JAX on this worker (joining the others) and counts what it sees."""
  import jax

  from aomni_jax import parallel
  from aomni_jax.config import MeshConfig
  parallel.initialize_distributed(MeshConfig())
  return {"platform": jax.default_backend(),
          "process": f"{jax.process_index()}/{jax.process_count()}",
          "local_devices": str(jax.local_device_count()), "devices": str(jax.device_count())}


@console("aomni-launch check")
def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m aomni_jax.launch.check", description=__doc__)
  parser.add_argument("--versions-only", action="store_true",
                      help="leave the chips alone (a run holds them)")
  args = parser.parse_args(argv)
  report = versions() if args.versions_only else {**versions(), **devices()}
  print(f"{socket.gethostname()}: " + " ".join(f"{k}={v}" for k, v in report.items()), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
