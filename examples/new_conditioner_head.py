"""Add a conditioner head and train it: a pooled-text global token next to the official ones.

`PooledTextHeads` keeps every official head and appends one low-level (prepended) DiT token: the
masked mean of the Qwen features through a zero-initialised projection. It is registered as a
heads builder, so the normal train step trains it, checkpoints hold it and inference builds it:

  python -m examples.new_conditioner_head
  PYTHONPATH=. aomni-train --config configs/tiny.py \
      --set modules.heads=examples.new_conditioner_head:build_heads
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.config import ModelConfig
from aomni_jax.layers.linear import Dense
from aomni_jax.models import registry
from aomni_jax.models.conditioners import ConditionerHeads, ConditionerInputs
from aomni_jax.models.dit import DiTConditioning
from examples import common


class PooledTextHeads(ConditionerHeads):
  """The official heads plus one global token from the mean Qwen feature."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    super().__init__(cfg, rngs=rngs)
    # Logical axes as the other heads: the new weights shard like them with no mesh code.
    self.pooled_text = Dense(cfg.omni.feature_dim, cfg.dit.global_cond_dim, rngs=rngs,
                             axes=("embed", "cond"), kernel_init=jax.nn.initializers.zeros)

  def __call__(self, inputs: ConditionerInputs, *, train: bool = False,
               key: jax.Array | None = None) -> DiTConditioning:
    cond = super().__call__(inputs, train=train, key=key)
    mask = inputs.qwen_mask.astype(jnp.float32)[..., None]
    pooled = (inputs.qwen_hidden * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0)
    token = self.pooled_text(pooled)[:, None, :]
    return cond._replace(global_cond=jnp.concatenate([cond.global_cond, token], axis=1))


@registry.register("heads", "pooled_text")
def build_heads(model: ModelConfig, rngs: nnx.Rngs) -> PooledTextHeads:
  return PooledTextHeads(model, rngs=rngs)


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--train-steps", type=int, default=3)
  args = parser.parse_args(argv)
  config = common.tiny_config(["modules.heads=pooled_text"])
  state, spec, losses = common.train_steps(config, args.train_steps)
  kernel = np.asarray(jax.device_get(state.params["heads"]["pooled_text"]["kernel"]))
  print(f"train losses: {[round(x, 4) for x in losses]}; new head |kernel| max "
        f"{np.abs(kernel).max():.2e} (zero at init)")
  heads = common.trained_module(spec, state, "heads")
  cond = common.stand_in_conditioning(config, heads, 2)
  print(f"global tokens: {cond.global_cond.shape[1]} "
        f"({config.model.sync.out_seq_len} sync + {config.model.mel.seq_len} mel + 1 pooled text)")
  return {"losses": losses, "kernel": kernel, "conditioning": cond}


if __name__ == "__main__":
  main()
