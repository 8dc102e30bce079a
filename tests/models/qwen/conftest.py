"""Shared tiny thinkers: one perturbed transformers model per architecture variant, saved once.

Everything is built locally (tests/models/qwen/tiny.py); torch runs with 2 threads in fp32.
"""

from __future__ import annotations

import dataclasses

import jax
import pytest

from tests.models.qwen import tiny


@dataclasses.dataclass
class Tiny:
  variant: str
  hf: object  # transformers Qwen2_5OmniThinkerForConditionalGeneration, fp32, eval
  directory: str  # save_pretrained thinker (+ tokenizer files)
  cfg: object  # our ThinkerConfig (fp32)
  model: object  # our Thinker, converted from `directory`
  processor: object


_BUILT: dict[str, Tiny] = {}


def _build(variant: str, tmp_path_factory) -> Tiny:
  if variant not in _BUILT:
    _BUILT[variant] = _make(variant, tmp_path_factory)
  return _BUILT[variant]


def _make(variant: str, tmp_path_factory) -> Tiny:
  import torch
  from aomni_jax.conversion.hf_qwen import load_thinker
  from aomni_jax.models.qwen_omni.config import load_thinker_config
  torch.set_num_threads(2)
  directory = str(tmp_path_factory.mktemp(f"thinker_{variant}"))
  hf = tiny.perturbed_thinker(tiny.tiny_config(variant))
  hf.save_pretrained(directory)
  cfg = load_thinker_config(directory, dtype="float32", param_dtype="float32")
  return Tiny(variant, hf, directory, cfg, load_thinker(directory, cfg),
              tiny.make_processor())


@pytest.fixture(scope="session", params=["a", "b"])
def thinker(request, tmp_path_factory) -> Tiny:
  """Both tiny architectures (parity tests run on each)."""
  return _build(request.param, tmp_path_factory)


@pytest.fixture(scope="session")
def thinker_a(tmp_path_factory) -> Tiny:
  """The spec-shaped architecture only (for the slower, mostly architecture-blind tests)."""
  return _build("a", tmp_path_factory)


@pytest.fixture(autouse=True)
def _highest_precision():
  with jax.default_matmul_precision("highest"):
    yield
