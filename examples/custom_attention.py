"""Swap the DiT's attention for your own function, then train and sample with the normal code.

The attention here is cosine attention (queries and keys L2-normalised, fixed temperature): a
parameter-free change, so the swapped DiT has the same weights as the official one, converted
checkpoints load into it strictly, and only the builder name changes in the config:

  python -m examples.custom_attention
  PYTHONPATH=. aomni-train --config configs/tiny.py \
      --set modules.dit=examples.custom_attention:build_dit

(the second form needs no registration: `module:function` is imported on use, so the module
must be importable — here from the repository root).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.config import ModelConfig
from aomni_jax.models import registry
from aomni_jax.models.dit import DiffusionTransformer
from aomni_jax.sampling import sample
from examples import common

TEMPERATURE = 10.0


def cosine_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, key_mask=None,
                     kv_lengths=None) -> jax.Array:
  """softmax(τ·cos(q, k))·v over [B, N, H, D]; `key_mask` [B, M] masks keys (xla layout)."""
  if kv_lengths is not None:
    raise ValueError("cosine_attention takes key masks; set dit.attention=xla")
  unit = lambda x: x / (jnp.linalg.norm(x.astype(jnp.float32), axis=-1, keepdims=True) + 1e-6)
  logits = TEMPERATURE * jnp.einsum("bnhd,bmhd->bhnm", unit(q), unit(k))
  if key_mask is not None:
    logits = jnp.where(key_mask[:, None, None, :], logits, -1e30)
  probs = jax.nn.softmax(logits, axis=-1)
  return jnp.einsum("bhnm,bmhd->bnhd", probs, v.astype(jnp.float32)).astype(q.dtype)


@registry.register("dit", "cosine_attention")
def build_dit(model: ModelConfig, rngs: nnx.Rngs) -> DiffusionTransformer:
  return DiffusionTransformer(model.dit, rngs=rngs, attention_fn=cosine_attention)


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--train-steps", type=int, default=3)
  parser.add_argument("--sample-steps", type=int, default=8)
  args = parser.parse_args(argv)
  config = common.tiny_config(["modules.dit=cosine_attention"])

  # 1. Trained with the normal train step: build_trainable goes through the registry.
  state, spec, losses = common.train_steps(config, args.train_steps)
  print(f"train losses: {[round(x, 4) for x in losses]}")

  # 2. Same parameter tree as the official DiT: its weights load into the swapped module.
  official = nnx.state(DiffusionTransformer(config.model.dit, rngs=nnx.Rngs(1)), nnx.Param)
  swapped = registry.build_dit(config.model, nnx.Rngs(0))
  nnx.update(swapped, official)

  # 3. Sampled with the normal sampler (guided), from the trained weights.
  dit = common.trained_module(spec, state, "dit")
  cond = common.stand_in_conditioning(config, common.trained_module(spec, state, "heads"), 1)
  latents = np.asarray(sample(*nnx.split(dit), common.stand_in_noise(config, 1), cond,
                              steps=args.sample_steps, cfg_scale=3.0))
  print(f"latents {latents.shape}, std {latents.std():.3f}")
  return {"losses": losses, "latents": latents, "swapped": swapped, "official": official}


if __name__ == "__main__":
  main()
