"""The Qwen2.5-Omni thinker: towers, multimodal merge, text decoder, lm_head, features.

`hidden_states` follows transformers' `output_hidden_states` convention for L layers:
index 0 = the merged input embeddings, k = the residual stream after decoder layer k−1
(1 ≤ k < L), L = the final RMSNorm of the last layer's output. Audio-Omni's `layer_idx=-2` is
index L−1: the stream after layer L−2, un-normalised; `features` runs only those layers.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from aomni_jax.layers.linear import make_param
from aomni_jax.models.qwen_omni.audio import AudioEncoder, AudioInputs
from aomni_jax.models.qwen_omni.config import ThinkerConfig
from aomni_jax.models.qwen_omni.text import TextDecoder
from aomni_jax.models.qwen_omni.vision import VisionEncoder, VisionInputs


class ThinkerInputs(NamedTuple):
  """One batch, all arrays; modalities that are absent are None (a static pytree difference)."""

  input_ids: jax.Array  # [B, L] int
  attention_mask: jax.Array  # [B, L] 1 = real token (left padding)
  position_ids: jax.Array  # [3, B, L] int (positions.rope_index)
  audio: AudioInputs | None = None
  image: VisionInputs | None = None
  video: VisionInputs | None = None


def merge_placeholders(embeds: jax.Array, input_ids: jax.Array, token_id: int,
                       features: jax.Array) -> jax.Array:
  """Overwrites the rows holding `token_id` with `features`, in row-major (batch, position) order."""
  b, n, d = embeds.shape
  flat_mask = (input_ids == token_id).reshape(-1)
  order = jnp.clip(jnp.cumsum(flat_mask) - 1, 0, features.shape[0] - 1)
  merged = jnp.where(flat_mask[:, None], features[order].astype(embeds.dtype),
                     embeds.reshape(b * n, d))
  return merged.reshape(b, n, d)


def resolve_layer_index(layer_idx: int, num_layers: int) -> int:
  """A (possibly negative) index into the L+1 hidden states → 0..L."""
  k = layer_idx + num_layers + 1 if layer_idx < 0 else layer_idx
  if not 0 <= k <= num_layers:
    raise ValueError(f"layer_idx {layer_idx} is outside the {num_layers + 1} hidden states "
                     f"(expected {-num_layers - 1}..{num_layers})")
  return k


class Thinker(nnx.Module):
  """audio_tower + visual + text decoder + lm_head."""

  def __init__(self, cfg: ThinkerConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.audio = AudioEncoder(cfg, rngs=rngs)
    self.visual = VisionEncoder(cfg, rngs=rngs)
    self.text = TextDecoder(cfg, rngs=rngs)
    self.lm_head = (None if cfg.tie_word_embeddings else
                    make_param(rngs, jax.nn.initializers.normal(0.02),
                               (cfg.text.hidden_size, cfg.text.vocab_size), ("embed", "vocab"),
                               cfg.weight_dtype))

  def embed(self, inputs: ThinkerInputs) -> jax.Array:
    """Token embeddings with audio / image / video placeholders replaced by tower outputs."""
    x = self.text.embed(inputs.input_ids)
    if inputs.audio is not None:
      x = merge_placeholders(x, inputs.input_ids, self.cfg.audio_token_id, self.audio(inputs.audio))
    if inputs.image is not None:
      x = merge_placeholders(x, inputs.input_ids, self.cfg.image_token_id,
                             self.visual(inputs.image))
    if inputs.video is not None:
      x = merge_placeholders(x, inputs.input_ids, self.cfg.video_token_id,
                             self.visual(inputs.video))
    return x

  def logits(self, hidden: jax.Array) -> jax.Array:
    dt = self.cfg.compute_dtype
    kernel = (self.text.embed_tokens[...].T if self.lm_head is None else self.lm_head[...])
    return jnp.dot(hidden.astype(dt), kernel.astype(dt))

  def hidden_states(self, inputs: ThinkerInputs) -> list[jax.Array]:
    """All L+1 hidden states (HF convention, see the module docstring)."""
    x = self.embed(inputs)
    last, states = self.text(x, inputs.position_ids, attention_mask=inputs.attention_mask,
                             collect=True)
    return [x, *list(states[:-1]), self.text.final_norm(last)]

  def __call__(self, inputs: ThinkerInputs) -> jax.Array:
    """Logits [B, L, vocab]."""
    x = self.embed(inputs)
    last, _ = self.text(x, inputs.position_ids, attention_mask=inputs.attention_mask)
    return self.logits(self.text.final_norm(last))

  def features(self, inputs: ThinkerInputs, layer_idx: int = -2) -> jax.Array:
    """`hidden_states[layer_idx]` [B, L, H], running only the decoder layers it needs."""
    k = resolve_layer_index(layer_idx, self.cfg.text.num_layers)
    x = self.embed(inputs)
    if k == 0:
      return x
    x, _ = self.text(x, inputs.position_ids, attention_mask=inputs.attention_mask, num_layers=k)
    return self.text.final_norm(x) if k == self.cfg.text.num_layers else x
