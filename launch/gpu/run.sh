#!/usr/bin/env bash
# Start this node's JAX process(es) of a multi-node GPU job; see launch/README.md.
#   NNODES=2 NODE_RANK=0 JAX_COORDINATOR_ADDRESS=10.0.0.2:1234 launch/gpu/run.sh [--mode gpu] \
#       -- aomni-train --config configs/audio_omni.py
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PYTHONPATH="${ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON:-python3}" -m aomni_jax.cli.launch gpu "$@"
