"""`sync` fixtures: the Synchformer-feature head (LayerNorm → Linear → Linear over time)."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors.numpy import load_file

from aomni_jax.config import SyncConfig
from aomni_jax.conversion.common import build_loaded
from aomni_jax.conversion.official import convert_head
from aomni_jax.models.conditioners import SyncHead
from aomni_jax.parity import CaseResult, compare, read_manifest, weights_path

ATOL = 1e-4  # golden README: sync atol = rtol = 1e-4 (f32 vs f64 was 2e-6)


def config_from_manifest(manifest: dict) -> SyncConfig:
  c = manifest["config_used"]
  return SyncConfig(input_dim=int(c.get("input_dim", 768)), seq_len=int(c["sync_seq_dim"]),
                    out_seq_len=int(c["sync_output_dim"]), out_dim=int(c["output_dim"]))


def run(fixture_dir: pathlib.Path) -> list[CaseResult]:
  fixture_dir = pathlib.Path(fixture_dir)
  manifest = read_manifest(fixture_dir)
  with np.load(fixture_dir / "cases.npz") as npz:
    arrays = {k: npz[k] for k in npz.files}
  make = lambda: SyncHead(config_from_manifest(manifest), rngs=nnx.Rngs(0))  # noqa: E731
  state = load_file(weights_path(fixture_dir, manifest))
  head = build_loaded(make, convert_head("sync", state, nnx.eval_shape(make)))
  with jax.default_matmul_precision("highest"):
    out = head(jnp.asarray(arrays["sync_features"]))
  return [compare("output", out, arrays["output"], atol=ATOL, rtol=ATOL)]
