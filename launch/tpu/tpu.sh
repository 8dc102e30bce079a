#!/usr/bin/env bash
# Cloud TPU job control; see launch/README.md. Called through its links (create.sh, setup.sh,
# check.sh, run.sh, logs.sh, stop.sh, status.sh, teardown.sh), each naming the action, or as
# `tpu.sh ACTION ...`. Every flag is validated first; --dry-run prints the gcloud commands.
set -euo pipefail
ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)"
export PYTHONPATH="${ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
ACTION="$(basename "$0" .sh)"
if [[ "${ACTION}" == tpu ]]; then
  ACTION="${1:?usage: tpu.sh create|setup|check|run|logs|stop|status|teardown [flags]}"
  shift
fi
exec "${PYTHON:-python3}" -m aomni_jax.cli.launch tpu "${ACTION}" "$@"
