"""Jitted text generation from the thinker with a static KV cache.

Prefill runs the towers and all decoder layers over the (left-padded) prompt and writes a cache
of length prompt + max_new_tokens. Each decode step feeds one token per row at position
(max prompt position + 1 + step) on all three M-RoPE rows — transformers' `rope_deltas` rule —
and stops once every row has produced a stop token. Rows that stopped emit `pad_token_id`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.models.qwen_omni.thinker import Thinker, ThinkerInputs


def sample_token(logits: jax.Array, key: jax.Array, temperature: float, top_p: float) -> jax.Array:
  """Greedy when temperature == 0, else nucleus sampling over logits [B, V]."""
  if temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits.astype(jnp.float32) / temperature
  if top_p < 1.0:
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # Keep the smallest prefix whose mass reaches top_p (the top token always survives).
    drop = jnp.cumsum(probs, axis=-1) - probs >= top_p
    sorted_logits = jnp.where(drop, -jnp.inf, sorted_logits)
    logits = jnp.full_like(logits, -jnp.inf).at[
        jnp.arange(logits.shape[0])[:, None], order].set(sorted_logits)
  return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "temperature",
                                             "top_p", "stop_ids", "pad_id"))
def _generate(graphdef, state, inputs: ThinkerInputs, key: jax.Array, *, max_new_tokens: int,
              temperature: float, top_p: float, stop_ids: tuple[int, ...], pad_id: int):
  model: Thinker = nnx.merge(graphdef, state)
  b, prompt_len = inputs.input_ids.shape
  valid = inputs.attention_mask.astype(bool)
  hidden, cache = model.text.prefill(model.embed(inputs), inputs.position_ids, valid,
                                     prompt_len + max_new_tokens)
  logits = model.logits(hidden[:, -1])
  first_position = jnp.max(jnp.where(valid[None], inputs.position_ids, -1), axis=(0, 2)) + 1
  key_mask = jnp.concatenate([valid, jnp.zeros((b, max_new_tokens), bool)], axis=1)
  stops = jnp.asarray(stop_ids, jnp.int32)
  layers = model.text.unstack_layers()  # once per call, not once per token

  def cond(carry):
    step, _, _, _, done, _, _ = carry
    return jnp.logical_and(step < max_new_tokens, ~jnp.all(done))

  def body(carry):
    step, logits, cache, key_mask, done, out, key = carry
    key, sub = jax.random.split(key)
    token = jnp.where(done, pad_id, sample_token(logits, sub, temperature, top_p))
    out = out.at[:, step].set(token)
    done = done | jnp.isin(token, stops)
    slot = prompt_len + step
    key_mask = key_mask.at[:, slot].set(True)
    position = jnp.broadcast_to((first_position + step)[None, :, None], (3, b, 1))
    hidden, cache = model.text.decode(model.text.embed(token[:, None]), position, cache, slot,
                                      key_mask, layers)
    return step + 1, model.logits(hidden[:, 0]), cache, key_mask, done, out, key

  out = jnp.full((b, max_new_tokens), pad_id, jnp.int32)
  carry = (jnp.int32(0), logits, cache, key_mask, jnp.zeros((b,), bool), out, key)
  return jax.lax.while_loop(cond, body, carry)[5]


def generate(model: Thinker, inputs: ThinkerInputs, *, max_new_tokens: int = 256,
             temperature: float = 0.0, top_p: float = 1.0, stop_ids: tuple[int, ...] | None = None,
             seed: int = 0) -> np.ndarray:
  """New tokens [B, max_new_tokens]; after a row's stop token the row holds pad_token_id."""
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  if temperature < 0 or not 0 < top_p <= 1:
    raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
  cfg = model.cfg
  stop_ids = (cfg.eos_token_id,) if stop_ids is None else tuple(stop_ids)
  graphdef, state = nnx.split(model)
  out = _generate(graphdef, state, inputs, jax.random.key(seed), max_new_tokens=max_new_tokens,
                  temperature=float(temperature), top_p=float(top_p), stop_ids=stop_ids,
                  pad_id=cfg.pad_token_id)
  return np.asarray(out)
