"""Cloud TPU slice names → topology facts, shared by the launcher and the AOT compiler.

One data table per TPU generation. Marketing names differ in what they count: v4 and v5p names
count TensorCores (two per chip, so v5p-64 is 32 chips), v5e and v6e names count chips. gcloud
calls v5e `v5litepod-N`. libtpu wants its own form, `<gen>:<grid>` (v5p-64 is `v5:2x4x4`), plus a
chip config: without `megacore_dense` a v4 topology exposes one device per TensorCore, not per chip.
"""

from __future__ import annotations

import dataclasses
import math
import re

from aomni_jax.cli.errors import UserError


@dataclasses.dataclass(frozen=True)
class Generation:
  """What one TPU generation looks like to gcloud and to libtpu."""

  name: str  # our name prefix: v4, v5p, v5e, v6e
  gcloud_prefix: str  # the accelerator-type prefix gcloud expects
  libtpu_name: str  # the topology prefix libtpu expects
  chip_config: str  # libtpu chip_config_name
  cores_per_chip: int  # what one unit of the marketing name counts
  max_single_host_chips: int  # slices up to this many chips are one VM
  hbm_gib: float  # HBM per chip the compiler lets a program use (libtpu 0.0.42.1's OOM message)
  runtime_version: str  # the TPU VM software version Google recommends for JAX
  grids: tuple[str, ...]  # the chip grids gcloud offers as one slice


GENERATIONS: dict[str, Generation] = {g.name: g for g in (
    Generation("v4", "v4", "v4", "megacore_dense", 2, 4, 31.75, "tpu-ubuntu2204-base",
               ("2x2x1", "2x2x2", "2x2x4", "2x4x4", "4x4x4", "4x4x8", "4x8x8", "8x8x8",
                "8x8x16", "8x16x16")),
    Generation("v5p", "v5p", "v5", "megacore", 2, 4, 95.74, "v2-alpha-tpuv5",
               ("2x2x1", "2x2x2", "2x2x4", "2x4x4", "4x4x4", "4x4x8", "4x8x8", "8x8x8",
                "8x8x16", "8x16x16", "16x16x16")),
    Generation("v5e", "v5litepod", "v5e", "default", 1, 8, 15.75, "v2-alpha-tpuv5-lite",
               ("1x1", "2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16")),
    Generation("v6e", "v6e", "v6e", "default", 1, 8, 31.25, "v2-alpha-tpuv6e",
               ("1x1", "2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16")),
)}

CHIPS_PER_HOST = 4  # every multi-host slice of these generations has 4 chips per VM


class SliceError(UserError, ValueError):
  """A TPU slice name or count that does not exist."""


@dataclasses.dataclass(frozen=True)
class TpuSlice:
  """One slice type, e.g. v5p-64."""

  generation: Generation
  grid: tuple[int, ...]

  @property
  def chips(self) -> int:
    return math.prod(self.grid)

  @property
  def name(self) -> str:
    return f"{self.generation.name}-{self.chips * self.generation.cores_per_chip}"

  @property
  def accelerator_type(self) -> str:
    """The `--accelerator-type` gcloud expects."""
    return f"{self.generation.gcloud_prefix}-{self.chips * self.generation.cores_per_chip}"

  @property
  def hosts(self) -> int:
    """TPU VMs (gcloud "workers") in one slice; the launcher runs one process on each."""
    if self.chips <= self.generation.max_single_host_chips:
      return 1
    return self.chips // CHIPS_PER_HOST

  @property
  def topology(self) -> str:
    """libtpu's topology name."""
    return f"{self.generation.libtpu_name}:{'x'.join(map(str, self.grid))}"

  @property
  def chips_per_host_bounds(self) -> tuple[int, int, int]:
    return (1, 1, 1) if self.chips == 1 else (2, 2, 1)

  @property
  def wrap(self) -> tuple[bool, bool, bool]:
    """Torus wrap-around links: 3-D slices from a 4x4x4 cube up, 2-D ones along 16-chip rows."""
    if len(self.grid) == 3:
      full = min(self.grid) >= 4
      return (full, full, full)
    return (self.grid[0] == 16, self.grid[1] == 16, False)


def _all_slices() -> dict[str, TpuSlice]:
  table = {}
  for gen in GENERATIONS.values():
    for grid in gen.grids:
      tpu = TpuSlice(gen, tuple(int(n) for n in grid.split("x")))
      table[tpu.name] = tpu
  return table


SLICES: dict[str, TpuSlice] = _all_slices()
_ALIASES = {s.accelerator_type: s.name for s in SLICES.values()}  # v5litepod-16 -> v5e-16


def parse_slice(name: str) -> TpuSlice:
  """Looks up `v5p-64` (or gcloud's `v5litepod-16`); the error lists what exists."""
  key = _ALIASES.get(name, name)
  if key in SLICES:
    return SLICES[key]
  match = re.fullmatch(r"([a-z0-9]+)-(\d+)", name)
  if match is None:
    raise SliceError(f"TPU slice {name!r} is not of the form <generation>-<count>, "
                     f"e.g. v5p-64 or v5e-16")
  gen = GENERATIONS.get(match.group(1)) or next(
      (g for g in GENERATIONS.values() if g.gcloud_prefix == match.group(1)), None)
  if gen is None:
    raise SliceError(f"TPU slice {name!r}: unknown generation {match.group(1)!r}; "
                     f"known: {sorted(GENERATIONS)}")
  sizes = [s.name for s in SLICES.values() if s.generation is gen]
  raise SliceError(f"TPU slice {name!r} does not exist; {gen.name} slices are: {', '.join(sizes)}")
