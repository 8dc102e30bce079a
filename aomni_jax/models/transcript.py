"""The transcript encoder (`speech_prompt`, official_spec §3.2): F5-style ConvNeXtV2 text encoder.

ids (+1, 0 = filler) → embedding + fixed sinusoidal table → ConvNeXtV2 blocks (filler rows zeroed
after each) → weightless RMSNorm → Linear(text_dim→out) → learned Linear over time
(seq_len→proj_seq_len) → rows without a transcript replaced by `empty_speech_feat` → RMSNorm.
The official batch rule is kept: if *no* item has a transcript, the raw `empty_speech_feat` is
returned without the final RMSNorm; in a mixed batch every row is normalised.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aomni_jax.config import TranscriptConfig
from aomni_jax.layers.embeddings import sinusoidal_table
from aomni_jax.layers.linear import Dense, make_param
from aomni_jax.layers.norms import LayerNorm, rms_norm
from aomni_jax.text.frontend import text_to_symbols
from aomni_jax.text.vocab import pad_ids, symbols_to_ids
from aomni_jax.layers.constraints import constrain

_POSITION_TABLE_LENGTH = 4096  # the official table length; later positions reuse the last row
_KERNEL_SIZE = 7
_GRN_EPS = 1e-6
_NORM_EPS = 1e-6


def tokenize(texts: Sequence[str | None], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
  """Transcripts → (embedding ids [B, seq_len] int32 with 0 as filler, has_text [B] bool)."""
  id_lists = [None if t is None else symbols_to_ids(text_to_symbols(t)) for t in texts]
  return pad_ids(id_lists, seq_len), np.array([t is not None for t in texts], bool)


def global_response_norm(x: jax.Array, gamma: jax.Array, beta: jax.Array) -> jax.Array:
  """GRN over the time axis (padded rows included): γ·(x·N) + β + x, N = G / (mean_c G + 1e-6).

  The L2 norm is 0 for an all-zero channel (e.g. an item with no transcript); its gradient is
  taken as 0 there, as torch does, instead of the 1/sqrt(0) = inf that jnp.sqrt would give.
  """
  s = jnp.sum(jnp.square(x), axis=1, keepdims=True)
  positive = s > 0
  g = jnp.where(positive, jnp.sqrt(jnp.where(positive, s, 1.0)), 0.0)
  n = g / (jnp.mean(g, axis=-1, keepdims=True) + _GRN_EPS)
  return gamma * (x * n) + beta + x


def depthwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Same-padded depthwise conv [B, T, C] * [k, 1, C] as a sum of k shifted, scaled copies.

  Not a grouped `conv_general_dilated`: with the channels sharded over `fsdp` and the batch over
  `data` × `fsdp`, XLA's SPMD partitioner doubled that conv's kernel gradient on a (2, 2, 2)
  mesh (tests/train/test_step.py caught it); element-wise ops partition exactly.
  """
  taps = kernel.shape[0]
  pad = (taps - 1) // 2
  padded = jnp.pad(x, ((0, 0), (pad, taps - 1 - pad), (0, 0)))
  length = x.shape[1]
  return sum(padded[:, k:k + length] * kernel[k, 0] for k in range(taps))


class ConvNeXtV2Block(nnx.Module):
  """x + pwconv2(GRN(GELU(pwconv1(LayerNorm(depthwise_conv7(x))))))."""

  def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
    self.dim = dim
    self.dwconv_kernel = make_param(rngs, jax.nn.initializers.lecun_normal(),
                                    (_KERNEL_SIZE, 1, dim), ("conv_in", None, "embed"),
                                    jnp.float32)
    self.dwconv_bias = make_param(rngs, jax.nn.initializers.zeros, (dim,), ("embed",),
                                  jnp.float32)
    self.norm = LayerNorm(dim, rngs=rngs, eps=1e-6)
    self.pwconv1 = Dense(dim, hidden, rngs=rngs, axes=("embed", "mlp"))
    self.grn_gamma = make_param(rngs, jax.nn.initializers.zeros, (hidden,), ("mlp",), jnp.float32)
    self.grn_beta = make_param(rngs, jax.nn.initializers.zeros, (hidden,), ("mlp",), jnp.float32)
    self.pwconv2 = Dense(hidden, dim, rngs=rngs, axes=("mlp", "embed"))

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.norm(depthwise_conv(x, self.dwconv_kernel[...]) + self.dwconv_bias[...])
    h = jax.nn.gelu(self.pwconv1(h), approximate=False)
    h = global_response_norm(h, self.grn_gamma[...], self.grn_beta[...])
    return x + self.pwconv2(h)


class TranscriptEncoder(nnx.Module):
  """ids [B, seq_len] (0 = filler) + has_text [B] → [B, proj_seq_len, out_dim]."""

  def __init__(self, cfg: TranscriptConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.embedding = make_param(rngs, jax.nn.initializers.normal(1.0),
                                (cfg.vocab_size + 1, cfg.text_dim), ("vocab", "embed"),
                                jnp.float32)
    self.blocks = nnx.List([ConvNeXtV2Block(cfg.text_dim, cfg.text_dim * cfg.conv_mult, rngs=rngs)
                            for _ in range(cfg.conv_layers)])
    self.proj = Dense(cfg.text_dim, cfg.out_dim, rngs=rngs, axes=("embed", "cond"))
    # The official code uses Identity when the two lengths are equal (and has no keys then).
    self.seq_proj = (Dense(cfg.seq_len, cfg.proj_seq_len, rngs=rngs, axes=("length", None))
                     if cfg.proj_seq_len != cfg.seq_len else None)
    self.empty_feature = make_param(rngs, jax.nn.initializers.zeros,
                                    (cfg.proj_seq_len, cfg.out_dim), ("length", "cond"),
                                    jnp.float32)

  def embed(self, ids: jax.Array) -> jax.Array:
    """Token embedding + sinusoidal positions, filler rows zeroed: the input of the blocks."""
    positions = np.minimum(np.arange(ids.shape[1]), _POSITION_TABLE_LENGTH - 1)
    table = sinusoidal_table(self.cfg.text_dim, _POSITION_TABLE_LENGTH)[positions]
    x = jnp.take(self.embedding[...], ids, axis=0) + table
    return jnp.where((ids != 0)[..., None], x, 0.0)

  def text_features(self, ids: jax.Array) -> jax.Array:
    """The TextEmbedding part: [B, seq_len] ids → [B, seq_len, text_dim], filler rows zero."""
    x = constrain(self.embed(ids), ("batch", None, None))
    for block in self.blocks:
      x = constrain(jnp.where((ids != 0)[..., None], block(x), 0.0), ("batch", None, None))
    return x

  def __call__(self, ids: jax.Array, has_text: jax.Array) -> jax.Array:
    if ids.shape[1] != self.cfg.seq_len:
      raise ValueError(f"transcript ids have length {ids.shape[1]}, expected seq_len "
                       f"{self.cfg.seq_len} (use tokenize())")
    x = self.proj(rms_norm(self.text_features(ids), eps=_NORM_EPS))
    if self.seq_proj is not None:
      x = jnp.swapaxes(self.seq_proj(jnp.swapaxes(x, 1, 2)), 1, 2)
    empty = jnp.broadcast_to(self.empty_feature[...], x.shape)
    x = jnp.where(has_text[:, None, None], x, empty)
    return jnp.where(jnp.any(has_text), rms_norm(x, eps=_NORM_EPS), x)
