"""`aomni-aot --slice v5p-64`: compile the real train step for a TPU slice on a CPU-only host.

libtpu (`pip install -e '.[tpu]'`) describes the slice's chips as a compile-only topology; the mesh
is built over those abstract devices, every input is a ShapeDtypeStruct carrying its sharding, and
the TPU compiler lowers and compiles the step exactly as it would on the pod. Nothing runs and no
array is allocated. The compiler raises RESOURCE_EXHAUSTED when the program does not fit in HBM,
so a successful compile is the hard check; this tool prints per-chip memory (peak vs usable HBM)
and the collectives XLA emitted, and exits 3 on RESOURCE_EXHAUSTED, 1 on any other failure.

The step traces under the slice's mesh, so `attention="auto"` resolves to splash and the kernel
is compiled as the pod runs it (the Mosaic TPU custom call, not Pallas' CPU interpreter); the
report names the attention used and counts the Mosaic kernels in the optimized HLO.

Use the same libtpu version on the pod: the memory figures and the OOM verdict depend on it.
`cost_analysis()['flops']` counts a scanned layer once, so it is not the step's FLOPs.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.util
import json
import math
import os
import re
import sys
import time
from typing import Sequence

import jax
from etils import epath
from jax.experimental import topologies

from aomni_jax import parallel
from aomni_jax.cli.errors import UserError, console
from aomni_jax.config import Config, ConfigError, apply_overrides, load_config
from aomni_jax.launch.slices import SliceError, TpuSlice, parse_slice
from aomni_jax.layers.attention import resolve_backend
from aomni_jax.layers.remat import POLICIES
from aomni_jax.train.features import step_batch_shapes
from aomni_jax.train.step import build_train_step

EXIT_OOM = 3
_GIB = 2**30
_COLLECTIVE_RE = re.compile(
    r"\s(all-gather|reduce-scatter|all-reduce|all-to-all|collective-permute)(?:-start)?\(")
_TENSOR_RE = re.compile(r"\b(pred|[suf]8|[suf]16|bf16|[suf]32|[suf]64)\[(\d+(?:,\d+)*)\]")
_ITEM_BYTES = {"pred": 1, "8": 1, "16": 2, "32": 4, "64": 8}
_MEMORY_FIELDS = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
                  "temp_size_in_bytes", "generated_code_size_in_bytes", "peak_memory_in_bytes")


def abstract_devices(tpu: TpuSlice, num_slices: int = 1) -> list:
  """libtpu's compile-only devices for `num_slices` copies of the slice (no TPU is opened)."""
  # libtpu guards the TPU with /tmp/libtpu_lockfile; compile-only use never opens one, so several
  # AOT processes (parallel tests, sweeps) may share the host.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  desc = topologies.get_topology_desc(
      topology_name=tpu.topology, platform="tpu", chip_config_name=tpu.generation.chip_config,
      chips_per_host_bounds=tpu.chips_per_host_bounds, num_slices=num_slices, wrap=tpu.wrap)
  devices = list(desc.devices)
  expected = tpu.chips * num_slices
  if len(devices) != expected:  # e.g. a v4 chip config that exposes TensorCores, not chips
    raise SliceError(f"libtpu returned {len(devices)} devices for {tpu.name} x{num_slices}; "
                     f"expected {expected} (one per chip)")
  return devices


def mosaic_kernel_count(hlo_text: str) -> int:
  """Pallas TPU kernels (splash) compiled as Mosaic custom calls in the optimized HLO."""
  return hlo_text.count('custom_call_target="tpu_custom_call"')


def collective_counts(hlo_text: str) -> dict[str, int]:
  """Collectives in the optimized per-device HLO (async pairs counted once, by their start)."""
  return dict(sorted(collections.Counter(_COLLECTIVE_RE.findall(hlo_text)).items()))


_ALL_GATHER_RE = re.compile(r"=\s*(.*?)\sall-gather(?:-start)?\(")


def all_gather_shapes(hlo_text: str) -> list[tuple[int, ...]]:
  """Per-device result shapes of the all-gathers in the optimized HLO; an async start's result
  type is an (operand, result) tuple, whose last shape is the gathered one."""
  shapes = []
  for result_type in _ALL_GATHER_RE.findall(hlo_text):
    dims = _TENSOR_RE.findall(result_type)
    if dims:
      shapes.append(tuple(int(d) for d in dims[-1][1].split(",")))
  return shapes


def global_batch_tensors(hlo_text: str, global_batches: set[int],
                         min_bytes: int = 256 * 2**20) -> list[str]:
  """Large per-chip tensors whose leading axis is a whole global (micro-)batch, largest first.

  In a data/FSDP-parallel step every activation should hold only this chip's samples; a big
  tensor with the global batch means XLA sharded it along another axis (typically the FSDP
  weight axis) and replicates the batch, paying with memory, FLOPs and all-reduces. A missing
  activation sharding constraint is the usual cause.
  """
  found = {}
  for dtype, dims in _TENSOR_RE.findall(hlo_text):
    shape = tuple(int(d) for d in dims.split(","))
    nbytes = math.prod(shape) * _ITEM_BYTES[dtype if dtype == "pred" else dtype.lstrip("sufb")]
    if shape[0] in global_batches and len(shape) > 1 and nbytes >= min_bytes:
      found[f"{dtype}[{dims}]"] = nbytes
  return [f"{name} ({nbytes / _GIB:.2f} GiB)"
          for name, nbytes in sorted(found.items(), key=lambda item: -item[1])]


@dataclasses.dataclass
class AotReport:
  """What one compile showed; memory is per device (chip), in GiB."""

  slice: str
  num_slices: int
  devices: int
  device_kind: str
  mesh: dict[str, int]
  parameters: int
  replicated_param_fraction: float
  global_batch: int
  batch_per_chip: int
  grad_accum_steps: int
  remat: str
  dtype: str
  attention: str  # the backend "auto" resolved to for the slice's platform
  usable_hbm_gib: float
  mosaic_kernels: int = 0  # splash compiled for the TPU (custom calls in the optimized HLO)
  lower_s: float = 0.0
  compile_s: float = 0.0
  memory_gib: dict[str, float] = dataclasses.field(default_factory=dict)
  collectives: dict[str, int] = dataclasses.field(default_factory=dict)
  global_batch_tensors: list[str] = dataclasses.field(default_factory=list)
  flops_per_device_scan_body_once: float = 0.0
  status: str = "ok"  # ok | resource_exhausted | error
  error: str = ""

  @property
  def peak_fraction(self) -> float:
    return self.memory_gib.get("peak_memory", 0.0) / self.usable_hbm_gib


def _abstract_inputs(step, batch_shapes: dict[str, jax.ShapeDtypeStruct]):
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=step.batch_shardings[k])
           for k, v in batch_shapes.items()}
  key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
  return step.spec.abstract, batch, jax.ShapeDtypeStruct(key.shape, key.dtype,
                                                         sharding=step.key_sharding)


def compile_for_slice(config: Config, tpu: TpuSlice, *, num_slices: int = 1,
                      batch_per_chip: int = 8,
                      compiler_options: dict[str, str] | None = None,
                      hlo_path: str | None = None) -> AotReport:
  """Lowers and compiles the train step for `num_slices` x `tpu`; never raises on a failed
  compile (the report says why), only on bad arguments."""
  devices = abstract_devices(tpu, num_slices)
  global_batch = batch_per_chip * len(devices)
  config = apply_overrides(config, [f"train.batch_size={global_batch}"])
  mesh = parallel.make_mesh(config.mesh, devices, num_slices)
  batch_shapes = step_batch_shapes(config, global_batch)
  step = build_train_step(config, mesh, batch_shapes)
  params = step.spec.abstract.params
  fraction, _ = parallel.replicated_fraction(params, step.spec.shardings.params)
  report = AotReport(
      slice=tpu.name, num_slices=num_slices, devices=len(devices),
      device_kind=devices[0].device_kind, mesh=dict(mesh.shape),
      parameters=sum(math.prod(x.shape) for x in jax.tree.leaves(params)),
      replicated_param_fraction=fraction, global_batch=global_batch,
      batch_per_chip=batch_per_chip, grad_accum_steps=config.train.grad_accum_steps,
      remat=config.model.dit.remat, dtype=config.model.dit.dtype,
      attention=_attention_for(mesh, config), usable_hbm_gib=tpu.generation.hbm_gib)
  start = time.perf_counter()
  with parallel.mesh_context(mesh):
    lowered = step.fn.lower(*_abstract_inputs(step, batch_shapes))
  report.lower_s = time.perf_counter() - start
  start = time.perf_counter()
  try:
    compiled = lowered.compile(compiler_options or None)
  except Exception as err:  # pylint: disable=broad-except  # the compiler's verdict is the result
    report.compile_s = time.perf_counter() - start
    text = str(err)
    out_of_memory = "RESOURCE_EXHAUSTED" in text or "Ran out of memory" in text
    report.status = "resource_exhausted" if out_of_memory else "error"
    report.error = f"{type(err).__name__}: {text[:2000]}"
    return report
  report.compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  report.memory_gib = {f.removesuffix("_in_bytes").removesuffix("_size"): getattr(memory, f) / _GIB
                       for f in _MEMORY_FIELDS if hasattr(memory, f)}
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  report.flops_per_device_scan_body_once = float((cost or {}).get("flops", 0.0))
  hlo = compiled.as_text()
  report.collectives = collective_counts(hlo)
  report.mosaic_kernels = mosaic_kernel_count(hlo)
  accum = report.grad_accum_steps
  if len(devices) > 1:  # on one chip the whole batch is legitimately local
    report.global_batch_tensors = global_batch_tensors(hlo, {global_batch, global_batch // accum})
  if hlo_path:
    epath.Path(hlo_path).write_text(hlo)
  return report


def _attention_for(mesh, config: Config) -> str:
  """The attention backend the step uses on the mesh's devices (what "auto" becomes there)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
    return resolve_backend(config.model.dit.attention, jnp.dtype(config.model.dit.dtype))


def format_report(r: AotReport) -> str:
  lines = [
      f"slice {r.slice} x{r.num_slices}: {r.devices} x {r.device_kind!r}, mesh {r.mesh}",
      f"trainable: {r.parameters:,} params ({r.parameters / 1e9:.3f} B), "
      f"{r.replicated_param_fraction:.2%} of param bytes replicated; dtype {r.dtype}, "
      f"remat {r.remat}, attention {r.attention}",
      f"batch {r.global_batch} global = {r.batch_per_chip} per chip, grad accum "
      f"{r.grad_accum_steps}",
      f"lower {r.lower_s:.1f} s, compile {r.compile_s:.1f} s",
  ]
  if r.status != "ok":
    lines.append(f"COMPILE FAILED ({r.status}): {r.error}")
    return "\n".join(lines)
  lines.append("memory per chip (GiB):")
  lines += [f"  {name:24s} {value:9.3f}" for name, value in r.memory_gib.items()]
  lines.append(f"  peak / usable HBM        {r.memory_gib.get('peak_memory', 0):.2f} / "
               f"{r.usable_hbm_gib:.2f} GiB ({r.peak_fraction:.0%})")
  if r.peak_fraction > 0.9:
    lines.append("  note: peak within 10% of HBM — XLA is likely rematerialising to fit")
  lines.append(f"collectives in the optimized HLO: {r.collectives}")
  if r.attention == "splash":
    lines.append(f"splash kernels compiled for the TPU (Mosaic custom calls): {r.mosaic_kernels}")
  if r.global_batch_tensors:
    lines.append(f"WARNING: {len(r.global_batch_tensors)} large per-chip tensor shape(s) hold a "
                 f"whole global (micro-)batch (activations lost their batch sharding; add "
                 f"sharding constraints): {', '.join(r.global_batch_tensors[:6])}")
  lines.append(f"cost_analysis flops per chip (scanned layers counted once): "
               f"{r.flops_per_device_scan_body_once:.4g}")
  return "\n".join(lines)


def _parse_options(items: Sequence[str]) -> dict[str, str]:
  options = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep:
      raise ConfigError(f"--compiler-option {item!r}: expected name=value")
    options[key] = value
  return options


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="aomni-aot", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--slice", required=True, help="e.g. v5p-64, v4-32, v5e-16, v6e-64")
  parser.add_argument("--num_slices", "--num-slices", type=int, default=1,
                      help="Multislice: the mesh's data axis spans the slices")
  parser.add_argument("--config", default="configs/audio_omni.py",
                      help="configs/x.py[:arg] (default: the full-size training config)")
  parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                      help="config overrides, e.g. dit.dtype=bfloat16 mesh.tensor=4")
  parser.add_argument("--batch-per-chip", "--batch_per_chip", type=int, default=8)
  parser.add_argument("--remat", choices=sorted(POLICIES), default=None,
                      help="override dit.remat")
  parser.add_argument("--compiler-option", action="append", default=[], metavar="NAME=VALUE",
                      help="XLA/TPU compile option, e.g. "
                           "xla_tpu_enable_latency_hiding_scheduler=true")
  parser.add_argument("--dump-hlo", default=None, help="write the optimized HLO text here")
  parser.add_argument("--json", default=None, help="write the report as JSON here")
  return parser


def _require_libtpu() -> None:
  if importlib.util.find_spec("libtpu") is None:
    raise UserError("libtpu is not installed, and it is what compiles for a TPU; install the TPU "
                    "extra: pip install -e '.[tpu]' (213 MB, no TPU needed)")


@console("aomni-aot")
def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    tpu = parse_slice(args.slice)
  except SliceError as err:
    raise UserError(str(err)) from err
  if args.num_slices < 1:
    raise UserError(f"--num_slices must be >= 1, got {args.num_slices}")
  if args.batch_per_chip < 1:
    raise UserError(f"--batch-per-chip must be >= 1, got {args.batch_per_chip}")
  overrides = list(args.set) + ([f"dit.remat={args.remat}"] if args.remat else [])
  config = load_config(args.config, overrides)
  _require_libtpu()
  try:
    report = compile_for_slice(config, tpu, num_slices=args.num_slices,
                               batch_per_chip=args.batch_per_chip,
                               compiler_options=_parse_options(args.compiler_option),
                               hlo_path=args.dump_hlo)
  except SliceError as err:
    raise UserError(str(err)) from err
  print(format_report(report), flush=True)
  if args.json:
    epath.Path(args.json).write_text(json.dumps(dataclasses.asdict(report), indent=2))
  if report.status == "resource_exhausted":
    return EXIT_OOM
  return 0 if report.status == "ok" else 1


if __name__ == "__main__":
  sys.exit(main())
