import json, time
import numpy as np
from aomni_jax.cli import convert as convert_cli, generate as generate_cli

def test_flow(official_tiny, tmp_path):
  t = time.time()
  out = tmp_path / "model"
  assert convert_cli.main([str(official_tiny.checkpoint), str(out), "--config", official_tiny.config_spec,
                           "--qwen-processor", str(official_tiny.processor)]) == 0
  print("convert", time.time() - t); t = time.time()
  print(sorted(p.name for p in out.iterdir()), json.loads((out / "manifest.json").read_text()))
  rc = generate_cli.main(["--checkpoint", str(out), "--task", "t2a", "--prompt", "rain", "--out", str(tmp_path / "rain.wav"), "--dtype", "float32", "--wav-format", "float"])
  print("gen", rc, time.time() - t); t = time.time()
  print((tmp_path / "rain.json").read_text())
