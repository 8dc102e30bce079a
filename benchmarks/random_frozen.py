"""Frozen modules for benchmarks: the real architectures with RANDOM weights.

The official weights are not available offline, and speed does not depend on them: the 3B Qwen
thinker (bf16 as `model.qwen` says) and the config's VAE, built in memory at their real shapes,
with a stand-in tokenizer. Features they make are noise; every figure measured on them is speed
only, and says so (`note`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from flax import nnx

from aomni_jax.models.qwen_omni.config import QWEN25_OMNI_3B
from aomni_jax.models.qwen_omni.thinker import Thinker
from aomni_jax.models.vae import OobleckVAE
from aomni_jax.train import demo, frozen


def note(tiny: bool) -> str:
  """What the features made by `frozen_modules` are, for printouts and result files."""
  return ("random-weight tiny frozen modules (CPU smoke run); speed only" if tiny
          else "random-weight frozen modules at the real shapes; speed only")


class FixedLengthTokenizer:
  """Stands in for the Qwen tokenizer (not shipped): `tokens` random ids per prompt, which is
  the cost that matters; a real chat prompt of Audio-Omni is about 40–70 Qwen tokens."""

  def __init__(self, vocab_size: int, tokens: int):
    self.vocab_size, self.tokens = vocab_size, tokens

  def __call__(self, texts, **unused):
    rng = np.random.default_rng(len(texts))
    return {"input_ids": [list(rng.integers(0, self.vocab_size, self.tokens)) for _ in texts]}


def frozen_modules(config, tiny: bool, tokens: int) -> frozen.FrozenModules:
  """The VAE of `config` and the Qwen2.5-Omni-3B thinker in `model.qwen`'s dtypes (`tiny`: the
  CPU demo's random tiny thinker, `train.demo.random_thinker`), with a `tokens`-long stand-in
  tokenizer."""
  if tiny:
    thinker, thinker_cfg = demo.random_thinker(config)
  else:
    thinker_cfg = dataclasses.replace(QWEN25_OMNI_3B, dtype=config.model.qwen.dtype,
                                      param_dtype=config.model.qwen.param_dtype)
    thinker = Thinker(thinker_cfg, rngs=nnx.Rngs(0))
  return frozen.FrozenModules(
      vae=OobleckVAE(config.model.vae, rngs=nnx.Rngs(0)), thinker=thinker,
      tokenizer=FixedLengthTokenizer(thinker_cfg.text.vocab_size, tokens),
      description=note(tiny))
