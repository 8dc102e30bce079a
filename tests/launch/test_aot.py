"""Ahead-of-time compilation for a TPU slice on this CPU host (needs libtpu: the `tpu` extra).

Each test compiles a tiny DiT train step through the real CLI in a subprocess (libtpu stays out
of the test process); it is skipped where libtpu is not installed.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

from aomni_jax.cli import aot

needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason="libtpu not installed (pip install -e '.[tpu]')")

ROOT = pathlib.Path(__file__).parents[2]
CONFIG = ["--config", str(ROOT / "configs" / "tiny.py")]


def run_aot(tmp_path, *argv):
  report = tmp_path / "report.json"
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, "-m", "aomni_jax.cli.aot", *argv, "--json", str(report)],
                        capture_output=True, text=True, timeout=300, env=env, check=False)
  return proc, (json.loads(report.read_text()) if report.exists() else None)


@needs_libtpu
def test_tiny_step_compiles_for_v5e_8(tmp_path):
  proc, report = run_aot(tmp_path, "--slice", "v5e-8", *CONFIG, "--batch-per-chip", "2")
  assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
  assert (report["devices"], report["global_batch"], report["status"]) == (8, 16, "ok")
  assert report["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
  memory = report["memory_gib"]
  # Arguments hold at least this chip's share of params, two Adam moments and the EMA (fp32).
  assert memory["argument"] * 2**30 >= 4 * 4 * report["parameters"] / 8
  assert 0 < memory["peak_memory"] < report["usable_hbm_gib"]
  assert report["collectives"].get("all-gather", 0) > 0  # FSDP gathers weights
  assert "peak / usable HBM" in proc.stdout


@needs_libtpu
def test_out_of_memory_exits_3(tmp_path):
  # ~8 B parameters: fp32 weights, moments and EMA alone exceed a v5e chip's 15.75 GiB.
  proc, report = run_aot(tmp_path, "--slice", "v5e-8", *CONFIG, "--batch-per-chip", "1",
                         "--set", "dit.depth=6", "dit.embed_dim=8192", "dit.num_heads=64")
  assert proc.returncode == aot.EXIT_OOM, proc.stdout + proc.stderr[-3000:]
  assert report["status"] == "resource_exhausted" and "RESOURCE_EXHAUSTED" in report["error"]


def test_collective_counts_from_hlo():
  hlo = ("  %ag = bf16[8] all-gather-start(%p), dims={0}\n  %d = all-gather-done(%ag)\n"
         "  %r = f32[] all-reduce(%x), to_apply=%add\n  %r2 = f32[] all-reduce(%y)\n"
         "  %cp = f32[2] collective-permute(%z)\n")
  assert aot.collective_counts(hlo) == {"all-gather": 1, "all-reduce": 2,
                                        "collective-permute": 1}


def test_bad_arguments_exit_2(capsys):
  assert aot.main(["--slice", "v5p-63", *CONFIG]) == 2
  assert "does not exist" in capsys.readouterr().err
  assert aot.main(["--slice", "v5p-64", *CONFIG, "--set", "dit.no_such_key=1"]) == 2
  assert "unknown config key" in capsys.readouterr().err


@needs_libtpu
def test_multislice_mesh_puts_the_data_axis_across_slices():
  from aomni_jax.config import load_config  # pylint: disable=g-import-not-at-top
  from aomni_jax.launch.slices import parse_slice  # pylint: disable=g-import-not-at-top
  devices = aot.abstract_devices(parse_slice("v5e-16"), num_slices=2)
  from aomni_jax import parallel  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh(load_config(CONFIG[1], ["mesh.data=2"]).mesh, devices, num_slices=2)
  assert dict(mesh.shape) == {"data": 2, "fsdp": 16, "tensor": 1}
  slices = [{d.slice_index for d in mesh.devices[i].flat} for i in range(2)]
  assert len(slices[0]) == len(slices[1]) == 1 and slices[0] != slices[1]
  with pytest.raises(aot.ConfigError, match="multiple of the 2 slices"):
    parallel.make_mesh(load_config(CONFIG[1], ["mesh.data=1"]).mesh, devices, num_slices=2)


def test_global_batch_tensors_flag_lost_batch_sharding():
  hlo = ("  %a = f32[256,32,600,600]{3,2,1,0} fusion(%x)\n"  # global batch 256: flagged
         "  %b = bf16[8,600,16384]{2,1,0} fusion(%y)\n"  # this chip's 8 samples: fine
         "  %c = f32[256,4]{1,0} fusion(%z)\n"  # global batch but small: ignored
         "  %d = pred[256,2584,1024] fusion(%w), %e = bf16[256,600,16384] add(%d)\n")
  assert aot.global_batch_tensors(hlo, {256, 128}) == ["f32[256,32,600,600] (10.99 GiB)",
                                                "bf16[256,600,16384] (4.69 GiB)",
                                                "pred[256,2584,1024] (0.63 GiB)"]
  assert aot.global_batch_tensors(hlo, {8}) == []


@needs_libtpu
def test_auto_attention_compiles_splash_as_the_mosaic_kernel(tmp_path):
  """The CPU host compiles the program a TPU runs: "auto" → splash, not Pallas' interpreter."""
  proc, report = run_aot(tmp_path, "--slice", "v5e-8", *CONFIG, "--batch-per-chip", "1",
                         "--set", "dit.attention=auto", "dit.depth=1")
  assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
  assert report["attention"] == "splash"
  assert report["mosaic_kernels"] > 0
  assert "splash kernels compiled for the TPU (Mosaic custom calls)" in proc.stdout


def test_mosaic_kernels_and_all_gathers_from_hlo():
  hlo = ('  %c = bf16[4,128]{1,0} custom-call(%a), custom_call_target="tpu_custom_call"\n'
         '  %g = (f32[4,2]{1,0}, f32[8,2]{1,0}) all-gather-start(f32[4,2] %q), dims={0}\n'
         '  %h = f32[128,3,64]{2,1,0} all-gather(f32[32,3,64]{2,1,0} %p), dims={0}\n')
  assert aot.mosaic_kernel_count(hlo) == 1
  assert aot.all_gather_shapes(hlo) == [(8, 2), (128, 3, 64)]


def test_missing_libtpu_is_one_line_naming_the_extra(monkeypatch, capsys):
  real = aot.importlib.util.find_spec
  monkeypatch.setattr(aot.importlib.util, "find_spec",
                      lambda name, *args: None if name == "libtpu" else real(name, *args))
  assert aot.main(["--slice", "v5e-8", *CONFIG]) == 2
  err = capsys.readouterr().err
  assert err.startswith("aomni-aot: libtpu is not installed") and "'.[tpu]'" in err
  assert err.count("\n") == 1
