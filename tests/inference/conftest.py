"""A tiny checkpoint in the official key layout, converted once per session.

DiT, VAE and heads: the golden `pipeline` fixture's official weights (tiny config). The Qwen
thinker: a transformers-built random Qwen2.5-Omni thinker of the same width (48), saved with
`save_pretrained` and stored under `conditioner.conditioners.omni_prompt.model.thinker.`. The
processor folder holds the byte-level tokenizer and the thinker's config.json, as a local
Qwen2.5-Omni-3B folder would.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest
from safetensors.numpy import load_file, save_file

from aomni_jax.conversion.official import THINKER_PREFIX
from tests.models.qwen import tiny

FIXTURE_CONFIG = """
import dataclasses, json, pathlib
from aomni_jax.parity.pipeline import config_from_manifest

def get_config(manifest):
  return config_from_manifest(json.loads(pathlib.Path(manifest).read_text()))
"""


def thinker_config(width: int) -> dict:
  """tiny.py's architecture 'a' at the fixture's Qwen width."""
  cfg = tiny.tiny_config("a")
  cfg["text_config"].update(hidden_size=width, num_attention_heads=4, num_key_value_heads=2,
                            rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                             "mrope_section": [2, 2, 2]})
  cfg["audio_config"]["output_dim"] = width
  cfg["vision_config"]["out_hidden_size"] = width
  return cfg


@dataclasses.dataclass
class OfficialTiny:
  checkpoint: pathlib.Path  # official-layout safetensors (DiT, VAE, heads, thinker)
  processor: pathlib.Path  # tokenizer files + thinker config.json
  config_spec: str  # --config value giving the fixture's tiny Config
  state: dict  # the checkpoint in memory


@pytest.fixture(scope="session")
def official_tiny(golden_dir, tmp_path_factory) -> OfficialTiny:
  import torch
  torch.set_num_threads(2)
  root = tmp_path_factory.mktemp("official_tiny")
  manifest = json.loads((golden_dir / "pipeline" / "manifest.json").read_text())
  state = load_file(golden_dir / "pipeline" / "weights.safetensors")
  thinker_dir = root / "thinker"
  tiny.perturbed_thinker(thinker_config(int(manifest["tiny_dims"]["qwen_dim"]))).save_pretrained(
      thinker_dir)
  state.update({THINKER_PREFIX + k: v
                for k, v in load_file(thinker_dir / "model.safetensors").items()})
  checkpoint = root / "model.safetensors"
  save_file(state, str(checkpoint))
  processor = root / "Qwen2.5-Omni-tiny"
  tiny.make_processor().tokenizer.save_pretrained(processor)
  (processor / "config.json").write_text((thinker_dir / "config.json").read_text())
  config = root / "fixture_config.py"
  config.write_text(FIXTURE_CONFIG)
  spec = f"{config}:{golden_dir / 'pipeline' / 'manifest.json'}"
  return OfficialTiny(checkpoint, processor, spec, state)
