"""The Audio-Omni Diffusion Transformer (official_spec §5), in Flax NNX.

Sequence layout inside the transformer: [low-level tokens + timestep embedding | latent tokens].
The low-level ("global") tokens are prepended, rotary positions run over the whole sequence, and
the prepended positions are sliced off after `project_out`. High-level tokens enter through
cross-attention with a key mask.

Blocks are stacked on a leading `layers` axis and run with `lax.scan` (or unrolled), so the
parameter layout is the same either way. Context K/V can be projected once per generation
(`prepare_context`) because they do not depend on t; the CFG-uncond branch can skip
cross-attention entirely because its context is exactly zero (no biases on the context path).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from aomni_jax.config import DiTConfig
from aomni_jax.layers.attention import compact_keys, dot_product_attention, resolve_backend
from aomni_jax.layers.constraints import constrain
from aomni_jax.layers.embeddings import fourier_features
from aomni_jax.layers.linear import Dense, FusedDense, make_param
from aomni_jax.layers.mlp import FusedSwiGLU
from aomni_jax.layers.norms import LayerNorm
from aomni_jax.layers.remat import maybe_remat
from aomni_jax.layers.rotary import apply_rotary, inverse_frequencies, rotary_cos_sin

_ZEROS = jax.nn.initializers.zeros

# attention(q [B,N,H,D], k [B,M,H,D], v, *, key_mask=None, kv_lengths=None) -> [B,N,H,D]; the
# hook for a custom attention (examples/custom_attention.py). None: `dot_product_attention` with
# `cfg.attention`. With cfg.attention="xla" a cross-attention mask arrives as `key_mask` [B, M].
AttentionFn = Callable[..., jax.Array]


class DiTConditioning(NamedTuple):
  """What the DiT is conditioned on. Any field may be None (that input is absent)."""

  cross_cond: jax.Array | None  # [B, M, cond_token_dim] high-level tokens (cross-attention)
  cross_mask: jax.Array | None  # [B, M] bool, True = attend
  global_cond: jax.Array | None  # [B, P, global_cond_dim] low-level tokens (prepended)


class Context(NamedTuple):
  """The projected context and, when precomputed, every layer's cross-attention keys/values.

  Sampling precomputes K/V once per generation (`prepare_context`). Training leaves them None:
  each block then projects its own K/V inside the rematerialised layer, so the 36 layers' K/V
  and their gradients are never all alive at once.
  """

  tokens: jax.Array  # [B, M, d] context after to_cond (valid keys first for cudnn/splash)
  k: jax.Array | None  # [L, B, M, H, Dh]
  v: jax.Array | None  # [L, B, M, H, Dh]
  key_mask: jax.Array | None  # [B, M] bool (xla backend)
  kv_lengths: jax.Array | None  # [B] int (cudnn/splash: valid keys moved to the front)


def _dtype(name: str) -> jnp.dtype:
  return jnp.dtype(name)


class CondMLP(nnx.Module):
  """Linear → SiLU → Linear, the shape of every conditioning projection of the DiT."""

  def __init__(self, in_dim: int, dim: int, *, use_bias: bool, in_axis: str, rngs: nnx.Rngs,
               dtype: jnp.dtype, param_dtype: jnp.dtype):
    self.fc1 = Dense(in_dim, dim, rngs=rngs, axes=(in_axis, "embed"), use_bias=use_bias,
                     dtype=dtype, param_dtype=param_dtype)
    self.fc2 = Dense(dim, dim, rngs=rngs, axes=("mlp", "embed"), use_bias=use_bias, dtype=dtype,
                     param_dtype=param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(jax.nn.silu(self.fc1(x)))


def _attend(fn: AttentionFn | None, backend: str, q: jax.Array, k: jax.Array, v: jax.Array,
            **masks) -> jax.Array:
  if fn is None:
    return dot_product_attention(q, k, v, backend=backend, **masks)
  return fn(q, k, v, **masks)


class SelfAttention(nnx.Module):
  """Fused qkv (kernel [d, 3, d], head-aligned under tensor parallelism), partial rotary on q
  and k, unmasked attention, zero-initialised output."""

  def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs, attention_fn: AttentionFn | None = None):
    d, dt, pdt = cfg.embed_dim, _dtype(cfg.dtype), _dtype(cfg.param_dtype)
    self.num_heads = cfg.num_heads
    self.backend = cfg.attention
    self.attention_fn = attention_fn
    self.qkv = FusedDense(d, 3, d, rngs=rngs, axes=("embed", "qkv"), use_bias=False, dtype=dt,
                          param_dtype=pdt)
    self.out = Dense(d, d, rngs=rngs, axes=("qkv", "embed"), use_bias=False, dtype=dt,
                     param_dtype=pdt, kernel_init=_ZEROS)

  def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    b, n, _ = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, -1)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    out = _attend(self.attention_fn, self.backend, q, k, v)
    return self.out(checkpoint_name(out.reshape(b, n, -1), "attn_out"))


class CrossAttention(nnx.Module):
  """Queries from the sequence, keys/values from the (projected) context; no rotary."""

  def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs, attention_fn: AttentionFn | None = None):
    d, dt, pdt = cfg.embed_dim, _dtype(cfg.dtype), _dtype(cfg.param_dtype)
    self.num_heads = cfg.num_heads
    self.backend = cfg.attention
    self.attention_fn = attention_fn
    self.q = Dense(d, d, rngs=rngs, axes=("embed", "qkv"), use_bias=False, dtype=dt,
                   param_dtype=pdt)
    self.kv = FusedDense(d, 2, d, rngs=rngs, axes=("embed", "qkv"), use_bias=False, dtype=dt,
                         param_dtype=pdt)
    self.out = Dense(d, d, rngs=rngs, axes=("qkv", "embed"), use_bias=False, dtype=dt,
                     param_dtype=pdt, kernel_init=_ZEROS)

  def project_kv(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
    b, m, _ = context.shape
    kv = self.kv(context).reshape(b, m, 2, self.num_heads, -1)
    return kv[:, :, 0], kv[:, :, 1]

  def __call__(self, x: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None,
               kv_lengths: jax.Array | None) -> jax.Array:
    b, n, _ = x.shape
    q = self.q(x).reshape(b, n, self.num_heads, -1)
    out = _attend(self.attention_fn, self.backend, q, k, v, key_mask=key_mask,
                  kv_lengths=kv_lengths)
    return self.out(checkpoint_name(out.reshape(b, n, -1), "cross_out"))


class TransformerBlock(nnx.Module):
  """Pre-norm self-attention, cross-attention and SwiGLU feed-forward, each residual."""

  def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs, attention_fn: AttentionFn | None = None):
    d, pdt = cfg.embed_dim, _dtype(cfg.param_dtype)
    norm = lambda: LayerNorm(d, rngs=rngs, eps=cfg.norm_eps, bias="buffer", param_dtype=pdt)
    self.pre_norm = norm()
    self.self_attn = SelfAttention(cfg, rngs=rngs, attention_fn=attention_fn)
    self.cross_norm = norm()
    self.cross_attn = CrossAttention(cfg, rngs=rngs, attention_fn=attention_fn)
    self.ff_norm = norm()
    self.ff = FusedSwiGLU(d, cfg.ff_inner_dim, rngs=rngs, dtype=_dtype(cfg.dtype),
                          param_dtype=pdt)

  def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array,
               cross: tuple[jax.Array, jax.Array, jax.Array | None, jax.Array | None] | None,
               cross_rows: int | None) -> jax.Array:
    """`cross` = (k, v, key_mask, kv_lengths) of this layer, or None to skip cross-attention.

    `cross_rows`: only the first rows of the batch attend to the context (the CFG-cond half);
    the remaining rows have an all-zero context, whose cross-attention output is exactly zero.
    """
    x = x + self.self_attn(self.pre_norm(x), cos, sin)
    if cross is not None:
      k, v, key_mask, kv_lengths = cross
      if cross_rows is None:
        x = x + self.cross_attn(self.cross_norm(x), k, v, key_mask, kv_lengths)
      else:
        head = x[:cross_rows]
        x = x.at[:cross_rows].add(self.cross_attn(self.cross_norm(head), k, v, key_mask,
                                                  kv_lengths))
    return x + self.ff(self.ff_norm(x))


class DiffusionTransformer(nnx.Module):
  """v̂(x_t, t | conditions) for rectified flow; x and v̂ are channels-last [B, T, C].

  `attention_fn` replaces the attention of every block (same parameters, so converted weights
  still load); see `AttentionFn`.
  """

  def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs, attention_fn: AttentionFn | None = None):
    d, dt, pdt = cfg.embed_dim, _dtype(cfg.dtype), _dtype(cfg.param_dtype)
    self.cfg = cfg
    self.timestep_features = make_param(rngs, jax.nn.initializers.normal(0.5),
                                        (cfg.timestep_features_dim // 2, 1), (None, None), pdt)
    self.to_timestep = CondMLP(cfg.timestep_features_dim, d, use_bias=True, in_axis="cond",
                               rngs=rngs, dtype=dt, param_dtype=pdt)
    self.to_cond = CondMLP(cfg.cond_token_dim, d, use_bias=False, in_axis="cond", rngs=rngs,
                           dtype=dt, param_dtype=pdt)
    self.to_global = CondMLP(cfg.global_cond_dim, d, use_bias=False, in_axis="cond", rngs=rngs,
                             dtype=dt, param_dtype=pdt)
    # 1x1 residual convs over channels, zero-initialised, stored as [in, out] dense kernels.
    self.preprocess = Dense(cfg.io_channels, cfg.io_channels, rngs=rngs, axes=(None, None),
                            use_bias=False, dtype=dt, param_dtype=pdt, kernel_init=_ZEROS)
    self.postprocess = Dense(cfg.io_channels, cfg.io_channels, rngs=rngs, axes=(None, None),
                             use_bias=False, dtype=dt, param_dtype=pdt, kernel_init=_ZEROS)
    self.project_in = Dense(cfg.io_channels, d, rngs=rngs, axes=("channels", "embed"),
                            use_bias=False, dtype=dt, param_dtype=pdt)
    self.project_out = Dense(d, cfg.io_channels, rngs=rngs, axes=("embed", "channels"),
                             use_bias=False, dtype=dt, param_dtype=pdt)

    @nnx.split_rngs(splits=cfg.depth)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make_blocks(rngs: nnx.Rngs) -> TransformerBlock:
      return TransformerBlock(cfg, rngs=rngs, attention_fn=attention_fn)

    self.blocks = make_blocks(rngs)

  # ---------------------------------------------------------------------------------------------
  def prepare_context(self, cross_cond: jax.Array, cross_mask: jax.Array | None, *,
                      per_layer_kv: bool = True) -> Context:
    """Projects the context tokens, and every layer's K/V once (they do not depend on t)."""
    kv_lengths, key_mask = None, cross_mask
    backend = resolve_backend(self.cfg.attention, jnp.dtype(self.cfg.dtype))
    if cross_mask is not None and backend != "xla":
      kv_lengths, (cross_cond,) = compact_keys(cross_mask.astype(bool), cross_cond)
      key_mask = None
    elif cross_mask is not None:
      key_mask = cross_mask.astype(bool)
    context = constrain(self.to_cond(cross_cond), ("batch", None, None))
    if not per_layer_kv:
      return Context(tokens=context, k=None, v=None, key_mask=key_mask, kv_lengths=kv_lengths)
    graphdef, state = nnx.split(self.blocks)

    def layer_kv(_, layer_state):
      block = nnx.merge(graphdef, layer_state)
      return None, block.cross_attn.project_kv(context)

    _, (k, v) = jax.lax.scan(layer_kv, None, state)
    return Context(tokens=context, k=k, v=v, key_mask=key_mask, kv_lengths=kv_lengths)

  def unstack_layers(self, context: Context | None) -> list[tuple]:
    """Per-layer (block state, k, v), sliced once.

    Slicing the stacked weights inside a loop over sampling steps would copy every layer's
    weights on every step; a sampler calls this once, before its loop, and passes the result
    to `forward(..., layers=...)`.
    """
    _, state = nnx.split(self.blocks)
    take = lambda tree, i: jax.tree.map(lambda a: a[i], tree)
    has_kv = context is not None and context.k is not None
    return [(take(state, i), context.k[i] if has_kv else None, context.v[i] if has_kv else None)
            for i in range(self.cfg.depth)]

  def __call__(self, x: jax.Array, t: jax.Array, cross_cond: jax.Array | None = None,
               cross_mask: jax.Array | None = None,
               global_cond: jax.Array | None = None) -> jax.Array:
    """One velocity evaluation (projects the context on every call, as the official code).

    Each block projects its K/V inside the (rematerialised) layer: the training path.
    """
    context = (None if cross_cond is None
               else self.prepare_context(cross_cond, cross_mask, per_layer_kv=False))
    return self.forward(x, t, context, global_cond)

  def forward(self, x: jax.Array, t: jax.Array, context: Context | None,
              global_cond: jax.Array | None, *, cross_rows: int | None = None,
              layers: list[tuple] | None = None) -> jax.Array:
    """Velocity from a prepared context. With `cross_rows`, only the first rows see it.

    `layers` (from `unstack_layers`) runs the blocks unrolled from pre-sliced weights.
    """
    cfg = self.cfg
    b, n_lat, _ = x.shape
    t_emb = self.to_timestep(fourier_features(t, self.timestep_features[...]))  # [B, d]
    if global_cond is not None:
      prepend = self.to_global(global_cond) + t_emb[:, None, :]
    else:
      prepend = t_emb[:, None, :]
    x = x + self.preprocess(x).astype(x.dtype)
    h = jnp.concatenate([prepend.astype(jnp.float32),
                         self.project_in(x).astype(jnp.float32)], axis=1)
    n_pre = prepend.shape[1]
    positions = jnp.arange(n_pre + n_lat)
    cos, sin = rotary_cos_sin(positions, inverse_frequencies(cfg.rotary_dim, cfg.rotary_base))
    h = self._run_blocks(h, cos, sin, context, cross_rows, layers)
    out = self.project_out(h[:, n_pre:]).astype(jnp.float32)
    return out + self.postprocess(out).astype(jnp.float32)

  def _run_blocks(self, h: jax.Array, cos: jax.Array, sin: jax.Array, context: Context | None,
                  cross_rows: int | None, layers: list[tuple] | None) -> jax.Array:
    graphdef, state = nnx.split(self.blocks)

    def body(carry, xs):
      layer_state, k, v = xs
      block = nnx.merge(graphdef, layer_state)
      cross = None
      if context is not None:
        if k is None:
          k, v = block.cross_attn.project_kv(context.tokens)
        cross = (k, v, context.key_mask, context.kv_lengths)
      out = block(constrain(carry, ("batch", None, None)), cos, sin, cross, cross_rows)
      out = constrain(out, ("batch", None, None))
      return out, out

    body = maybe_remat(body, self.cfg.remat, prevent_cse=not self.cfg.scan_layers)
    kv = (None, None) if context is None or context.k is None else (context.k, context.v)
    if layers is None and self.cfg.scan_layers:
      h, hidden = jax.lax.scan(body, h, (state, *kv))
    else:
      if layers is None:
        layers = [jax.tree.map(lambda a, i=i: a[i], (state, *kv)) for i in range(self.cfg.depth)]
      hidden = []
      for layer in layers:
        h, out = body(h, layer)
        hidden.append(out)
    self._record_hidden(hidden)
    return h

  def _record_hidden(self, hidden: jax.Array | list[jax.Array]) -> None:
    """Under `nnx.capture(..., nnx.Intermediate)`, sows every block's output as `block_outputs`
    [depth, B, prepended + latent tokens, d]; otherwise records nothing (and XLA drops it)."""
    if getattr(self, "__captures__", None):
      self.sow(nnx.Intermediate, "block_outputs",
               jnp.stack(hidden) if isinstance(hidden, list) else hidden)
