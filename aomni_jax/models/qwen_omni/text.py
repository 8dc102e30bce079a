"""The thinker's Qwen2 text decoder with multimodal rotary positions (M-RoPE).

Layer parameters are stacked along a leading `layers` axis and run with `lax.scan`, so a prefix
of the stack (features at `hidden_states[k]`) is just a static slice: the layers after it are
never computed. The same scan body serves a plain forward, a prefill that returns the K/V of
every layer, and a one-token decode step over a static KV cache.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from aomni_jax.layers.attention import dot_product_attention
from aomni_jax.layers.linear import make_param
from aomni_jax.layers.norms import rms_norm
from aomni_jax.layers.rotary import apply_rotary, inverse_frequencies, multimodal_cos_sin
from aomni_jax.models.qwen_omni.config import ThinkerConfig

_normal = jax.nn.initializers.normal(0.02)
_zeros = jax.nn.initializers.zeros
_ones = jax.nn.initializers.ones


class KVCache(NamedTuple):
  """Static cache [layers, B, max_len, kv_heads, head_dim] for keys and values."""

  k: jax.Array
  v: jax.Array


class DecoderLayers(nnx.Module):
  """All decoder layers' weights, stacked: kernels are [layers, in, out]."""

  def __init__(self, cfg: ThinkerConfig, *, rngs: nnx.Rngs):
    t = cfg.text
    n, h, dt = t.num_layers, t.hidden_size, cfg.weight_dtype
    q_dim, kv_dim = t.num_heads * t.head_dim, t.num_kv_heads * t.head_dim

    def param(init, shape, axes):
      return make_param(rngs, init, (n, *shape), ("layers", *axes), dt)

    self.input_norm = param(_ones, (h,), ("norm",))
    self.q_kernel = param(_normal, (h, q_dim), ("embed", "heads"))
    self.q_bias = param(_zeros, (q_dim,), ("heads",))
    self.k_kernel = param(_normal, (h, kv_dim), ("embed", "kv"))
    self.k_bias = param(_zeros, (kv_dim,), ("kv",))
    self.v_kernel = param(_normal, (h, kv_dim), ("embed", "kv"))
    self.v_bias = param(_zeros, (kv_dim,), ("kv",))
    self.o_kernel = param(_normal, (q_dim, h), ("heads", "embed"))
    self.post_norm = param(_ones, (h,), ("norm",))
    self.gate_kernel = param(_normal, (h, t.intermediate_size), ("embed", "mlp"))
    self.up_kernel = param(_normal, (h, t.intermediate_size), ("embed", "mlp"))
    self.down_kernel = param(_normal, (t.intermediate_size, h), ("mlp", "embed"))

  def stacked(self, num_layers: int) -> dict[str, jax.Array]:
    """The first `num_layers` layers' weights as a dict of arrays (a static slice)."""
    return {name: var[...][:num_layers] for name, var in vars(self).items()
            if isinstance(var, nnx.Param)}


class TextDecoder(nnx.Module):
  """embed_tokens → decoder layers → final RMSNorm (the lm_head lives in the thinker)."""

  def __init__(self, cfg: ThinkerConfig, *, rngs: nnx.Rngs):
    t = cfg.text
    self.cfg = cfg
    self.embed_tokens = make_param(rngs, _normal, (t.vocab_size, t.hidden_size),
                                   ("vocab", "embed"), cfg.weight_dtype)
    self.layers = DecoderLayers(cfg, rngs=rngs)
    self.norm = make_param(rngs, _ones, (t.hidden_size,), ("norm",), cfg.weight_dtype)

  def embed(self, input_ids: jax.Array) -> jax.Array:
    return jnp.take(self.embed_tokens[...], input_ids, axis=0).astype(self.cfg.compute_dtype)

  def final_norm(self, x: jax.Array) -> jax.Array:
    return rms_norm(x, self.norm[...], self.cfg.text.rms_norm_eps)

  def rotary(self, position_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """cos/sin [B, L, head_dim] from position rows [3, B, L], cast to the compute dtype."""
    t = self.cfg.text
    inv_freq = inverse_frequencies(t.head_dim, t.rope_theta)
    cos, sin = multimodal_cos_sin(position_ids, inv_freq, t.mrope_section)
    return cos.astype(self.cfg.compute_dtype), sin.astype(self.cfg.compute_dtype)

  def __call__(self, x: jax.Array, position_ids: jax.Array, *,
               attention_mask: jax.Array | None = None, num_layers: int | None = None,
               collect: bool = False) -> tuple[jax.Array, jax.Array | None]:
    """Runs the first `num_layers` layers (all by default) over embeddings x [B, L, H].

    Returns the residual stream after the last run layer (not normalised) and, with `collect`,
    the stream after every run layer [n, B, L, H].
    """
    n = self.cfg.text.num_layers if num_layers is None else num_layers
    cos, sin = self.rotary(position_ids)
    attend = lambda q, k, v: dot_product_attention(
        q, k, v, key_mask=None if attention_mask is None else attention_mask.astype(bool),
        causal=True, backend=self.cfg.attention)

    if collect:
      def body(h, p):
        h, _ = _layer(self.cfg, p, h, cos, sin, attend)
        return h, h

      return jax.lax.scan(body, x, self.layers.stacked(n))
    # Index the full stack inside the loop: slicing it first would copy the weights.
    params = self.layers.stacked(self.cfg.text.num_layers)

    def step(i, h):
      p = jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, i, keepdims=False), params)
      return _layer(self.cfg, p, h, cos, sin, attend)[0]

    return jax.lax.fori_loop(0, n, step, x), None

  def prefill(self, x: jax.Array, position_ids: jax.Array, attention_mask: jax.Array,
              max_len: int) -> tuple[jax.Array, KVCache]:
    """All layers over the prompt; returns normalised hidden states and a cache of `max_len`."""
    cos, sin = self.rotary(position_ids)
    attend = lambda q, k, v: dot_product_attention(
        q, k, v, key_mask=attention_mask.astype(bool), causal=True, backend=self.cfg.attention)

    def body(h, p):
      return _layer(self.cfg, p, h, cos, sin, attend)

    x, (k, v) = jax.lax.scan(body, x, self.layers.stacked(self.cfg.text.num_layers))
    pad = [(0, 0), (0, 0), (0, max_len - x.shape[1]), (0, 0), (0, 0)]
    return self.final_norm(x), KVCache(jnp.pad(k, pad), jnp.pad(v, pad))

  def unstack_layers(self) -> list[dict[str, jax.Array]]:
    """Each layer's weights as separate arrays.

    Sliced once before a decode loop: indexing the stack inside the loop would copy every
    layer's weights on every token (a GEMM reads a contiguous operand), tripling the weight
    traffic that bounds decode speed.
    """
    params = self.layers.stacked(self.cfg.text.num_layers)
    return [jax.tree.map(lambda a, i=i: a[i], params) for i in range(self.cfg.text.num_layers)]

  def decode(self, x: jax.Array, position_ids: jax.Array, cache: KVCache, index: jax.Array,
             key_mask: jax.Array, layers: list[dict[str, jax.Array]] | None = None
             ) -> tuple[jax.Array, KVCache]:
    """One token per row: x [B, 1, H] written at cache slot `index`; key_mask [B, max_len].

    The layers are unrolled over `layers` (from `unstack_layers`) and only the new token's slot
    of the cache is written, so inside a loop the cache is updated in place.
    """
    cos, sin = self.rotary(position_ids)
    layers = self.unstack_layers() if layers is None else layers
    k_cache, v_cache = cache.k, cache.v
    for i, p in enumerate(layers):

      def attend(q, k, v, i=i):
        nonlocal k_cache, v_cache
        start = (i, 0, index, 0, 0)
        k_cache = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype)[None], start)
        v_cache = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype)[None], start)
        return dot_product_attention(q, k_cache[i], v_cache[i], key_mask=key_mask, backend="xla")

      x, _ = _layer(self.cfg, p, x, cos, sin, attend)
    return self.final_norm(x), KVCache(k_cache, v_cache)


def _layer(cfg: ThinkerConfig, p: dict[str, jax.Array], x: jax.Array, cos: jax.Array,
           sin: jax.Array, attend):
  """One pre-norm decoder layer; returns (x, (k, v)) with the rotated keys and the values."""
  t, dt = cfg.text, cfg.compute_dtype
  b, n, _ = x.shape

  def dense(y, kernel, bias=None):
    out = jnp.dot(y.astype(dt), kernel.astype(dt))
    return out if bias is None else out + bias.astype(dt)

  h = rms_norm(x, p["input_norm"], t.rms_norm_eps)
  q = dense(h, p["q_kernel"], p["q_bias"]).reshape(b, n, t.num_heads, t.head_dim)
  k = dense(h, p["k_kernel"], p["k_bias"]).reshape(b, n, t.num_kv_heads, t.head_dim)
  v = dense(h, p["v_kernel"], p["v_bias"]).reshape(b, n, t.num_kv_heads, t.head_dim)
  q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
  attn = attend(q, k, v)
  x = x + dense(attn.reshape(b, n, -1), p["o_kernel"]).astype(x.dtype)
  h = rms_norm(x, p["post_norm"], t.rms_norm_eps)
  mlp = dense(jax.nn.silu(dense(h, p["gate_kernel"])) * dense(h, p["up_kernel"]), p["down_kernel"])
  return x + mlp.astype(x.dtype), (k, v)
