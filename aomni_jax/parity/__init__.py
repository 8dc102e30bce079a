"""The golden-fixture runner behind `aomni-parity`.

A fixture directory holds `manifest.json` (with a `"fixture"` kind and the official config),
`weights.safetensors` (official key names) and `cases.npz`. Each kind has a module
`aomni_jax.parity.<kind>` exposing `run(fixture_dir) -> list[CaseResult]`; the module builds our
network from the manifest's config, converts the weights with the real converter, runs every
case present in `cases.npz` and compares.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib

import numpy as np

KINDS = ("dit", "sampler", "vae", "transcript", "mel", "sync", "synchformer", "pipeline")


@dataclasses.dataclass(frozen=True)
class CaseResult:
  """One compared array. `max_rel` is max|ours − ref| / max|ref|."""

  name: str
  max_abs: float
  max_rel: float
  atol: float
  passed: bool

  def line(self) -> str:
    status = "ok  " if self.passed else "FAIL"
    return (f"{status} {self.name:<48} max_abs={self.max_abs:.3e} max_rel={self.max_rel:.3e} "
            f"tol={self.atol:.1e}")


def compare(name: str, ours, ref, *, atol: float, rtol: float = 0.0) -> CaseResult:
  """Elementwise |ours − ref| ≤ atol + rtol·|ref| (np.allclose semantics), shapes must match."""
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  if ours.shape != ref.shape:
    return CaseResult(f"{name} (shape {ours.shape} != {ref.shape})", np.inf, np.inf, atol, False)
  diff = np.abs(ours - ref)
  max_abs = float(diff.max()) if diff.size else 0.0
  scale = float(np.abs(ref).max()) if ref.size else 0.0
  passed = bool(np.all(diff <= atol + rtol * np.abs(ref))) and np.all(np.isfinite(ours))
  return CaseResult(name, max_abs, max_abs / scale if scale else max_abs, atol, passed)


def read_manifest(fixture_dir: pathlib.Path) -> dict:
  path = pathlib.Path(fixture_dir) / "manifest.json"
  if not path.exists():
    raise FileNotFoundError(f"{fixture_dir} is not a fixture directory: no manifest.json")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def load_fixture(fixture_dir: str | pathlib.Path) -> tuple[dict, dict[str, np.ndarray]]:
  """(manifest, every array of cases.npz) of one fixture directory."""
  fixture_dir = pathlib.Path(fixture_dir)
  manifest = read_manifest(fixture_dir)
  with np.load(fixture_dir / "cases.npz") as npz:
    return manifest, {k: npz[k] for k in npz.files}


def weights_path(fixture_dir: pathlib.Path, manifest: dict) -> pathlib.Path:
  """The fixture's weights: its own file, or the one its manifest points to (e.g. ../dit/...)."""
  own = pathlib.Path(fixture_dir) / "weights.safetensors"
  if own.exists():
    return own
  ref = manifest.get("weights")
  if isinstance(ref, dict):
    ref = ref.get("file")
  if isinstance(ref, str):
    candidate = pathlib.Path(fixture_dir) / ref.split()[0]
    if candidate.exists():
      return candidate
  raise FileNotFoundError(f"{fixture_dir}: no weights.safetensors and the manifest names none "
                          "that exists")


def run_fixture(fixture_dir: str | pathlib.Path) -> list[CaseResult]:
  """Runs every case of one fixture directory through the module for its kind."""
  fixture_dir = pathlib.Path(fixture_dir)
  kind = str(read_manifest(fixture_dir).get("fixture", "")).split(" ")[0]  # "sync (bonus …)"
  if kind not in KINDS:
    raise ValueError(f"{fixture_dir}: unknown fixture kind {kind!r}; known: {KINDS}")
  module = importlib.import_module(f"aomni_jax.parity.{kind}")
  return module.run(fixture_dir)
