"""Extract intermediate DiT activations for analysis with `nnx.capture`, without editing the model.

Under `nnx.capture(fn, nnx.Intermediate)` the DiT sows every block's output (`block_outputs`,
[depth, B, tokens, d]); with `method_outputs=nnx.Intermediate` it also records what every
submodule method returned (the timestep embedding, the context projection, ...). Outside a
capture nothing is recorded and the compiled sampler and train step are unchanged.

  python -m examples.intercept_activations
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.models import registry
from examples import common


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--t", type=float, default=0.5, help="flow time of the probe")
  args = parser.parse_args(argv)
  config = common.tiny_config()
  dit = common.stand_in_weights(registry.build_dit(config.model, nnx.Rngs(0)))
  cond = common.stand_in_conditioning(config, registry.build_heads(config.model, nnx.Rngs(1)), 2)
  x = common.stand_in_noise(config, 2)
  t = jnp.full((2,), args.t)
  forward = nnx.capture(lambda model, *a: model(*a), nnx.Intermediate,
                        method_outputs=nnx.Intermediate)
  velocity, intermediates = forward(dit, x, t, *cond)
  blocks = np.asarray(intermediates["block_outputs"][0])
  timestep = np.asarray(intermediates["to_timestep"]["__call__"][0])
  rms = np.sqrt((blocks ** 2).mean(axis=(1, 2, 3)))
  print(f"stand-in weights; block outputs {blocks.shape}; RMS per layer {np.round(rms, 3).tolist()}; "
        f"timestep embedding {timestep.shape}")
  return {"velocity": np.asarray(velocity), "block_outputs": blocks, "timestep": timestep,
          "plain": np.asarray(dit(x, t, *cond))}


if __name__ == "__main__":
  main()
