"""Fine-tune only the conditioner heads with the DiT frozen, in a pure jitted step of your own.

The frozen DiT's weights are an ordinary argument of the step, outside the differentiated
pytree: no gradient or optimizer state is ever made for them (cheaper than masking the update
with `optax.masked`/`optax.set_to_zero`, which still differentiates everything; use a mask when
you freeze part of a module, e.g. the first blocks of the DiT).

  python -m examples.finetune_heads
"""

from __future__ import annotations

import argparse
import functools

import jax
import numpy as np
import optax
from flax import nnx

from aomni_jax import flow
from aomni_jax.models import registry
from aomni_jax.train import features
from aomni_jax.train.frozen import sample_latents
from aomni_jax.train.step import conditioning
from examples import common


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--learning-rate", type=float, default=1e-3)
  args = parser.parse_args(argv)
  config = common.tiny_config()
  # In practice the DiT of a converted model directory (inference.model_dir.load_component);
  # here stand-in weights (a fresh DiT's zero-initialised outputs pass no gradient to the heads).
  dit = common.stand_in_weights(registry.build_dit(config.model, nnx.Rngs(0)))
  dit_graphdef, dit_state = nnx.split(dit)
  heads_graphdef, heads_params, heads_rest = nnx.split(
      registry.build_heads(config.model, nnx.Rngs(1)), nnx.Param, ...)
  tx = optax.adam(args.learning_rate)

  def loss_fn(params, dit_state, batch, key):
    heads = nnx.merge(heads_graphdef, params, heads_rest)
    dit = nnx.merge(dit_graphdef, dit_state)
    heads_key, flow_key, latent_key = jax.random.split(key, 3)
    cond = conditioning(heads, batch, heads_key)
    # The batch holds the VAE posterior (mean, std): one draw per step, as in `train.step`.
    latents = sample_latents(batch["latent_mean"], batch["latent_std"], latent_key)
    loss, _ = flow.rectified_flow_loss(lambda x, t, c: dit(x, t, *c), latents, cond,
                                       flow_key, config.flow)
    return loss

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, dit_state, batch, key):
    loss, grads = jax.value_and_grad(loss_fn)(params, dit_state, batch, key)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  as_numpy = lambda state: jax.tree.map(np.asarray, nnx.to_pure_dict(state))
  frozen_before, start = as_numpy(dit_state), as_numpy(heads_params)
  params, opt_state, losses = heads_params, tx.init(heads_params), []
  for i in range(args.steps):
    batch = features.stand_in_step_batch(config, 2, seed=i)
    params, opt_state, loss = step(params, opt_state, dit_state, batch, jax.random.key(i))
    losses.append(float(loss))
  print(f"heads-only losses: {[round(x, 4) for x in losses]}")
  return {"losses": losses, "heads_before": start, "heads_after": as_numpy(params),
          "dit_before": frozen_before, "dit_after": as_numpy(dit_state)}


if __name__ == "__main__":
  main()
