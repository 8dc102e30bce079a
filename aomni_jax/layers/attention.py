"""One attention function with interchangeable backends.

Backends:
  * "xla": the reference (einsum + fp32 softmax); runs everywhere, used for parity tests.
  * "cudnn": cuDNN fused flash attention through `jax.nn.dot_product_attention` (GPU, bf16/fp16).
  * "splash": Pallas splash attention on TPU (see `aomni_jax.layers.splash`).
  * "auto": the fastest of these for the platform and dtype (`resolve_backend`).

Masks are described compactly and applied inside the kernel; a dense [B, H, N, M] mask is never
built. Key masks that are not a prefix (e.g. [Qwen tokens, padding, transcript tokens]) can be
turned into a prefix with `compact_keys`, which is exact because attention without positional
terms on the keys is invariant to permuting the keys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

BACKENDS = ("xla", "cudnn", "splash", "auto")


def resolve_backend(backend: str, dtype) -> str:
  """"auto": cuDNN flash on GPU for bf16/fp16, splash on TPU, the XLA reference otherwise."""
  if backend != "auto":
    return backend
  platform = jax.default_backend()
  if platform == "gpu" and dtype in (jnp.bfloat16, jnp.float16):
    return "cudnn"
  return "splash" if platform == "tpu" else "xla"


def _cudnn_applies(n: int, m: int, head_dim: int, *, key_mask, causal: bool, segments: bool,
                   mask: bool) -> bool:
  """Whether the cudnn path below handles this call ("auto" falls back to xla elsewhere)."""
  if segments or mask or head_dim % 8 or head_dim > 256:
    return False
  return not (key_mask is not None and causal and n != m)


def compact_keys(key_mask: jax.Array, *tensors: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
  """Moves valid keys to the front (stable), returning their counts and the permuted tensors.

  key_mask: [B, M] bool; each tensor: [B, M, ...]. After this, `kv_lengths` describes the mask.
  """
  order = jnp.argsort(~key_mask, axis=-1, stable=True)
  lengths = jnp.sum(key_mask, axis=-1).astype(jnp.int32)
  gathered = [jnp.take_along_axis(t, order.reshape(order.shape + (1,) * (t.ndim - 2)), axis=1)
              for t in tensors]
  return lengths, gathered


def compact_tokens(key_mask: jax.Array, q: jax.Array, k: jax.Array,
                   v: jax.Array) -> tuple[jax.Array, jax.Array, list[jax.Array]]:
  """Self-attention form of `compact_keys`: queries move with their keys.

  A stable permutation keeps the valid tokens' order, so a causal mask among them is unchanged;
  rows of masked tokens are garbage either way. Returns (lengths, inverse order, [q, k, v]).
  """
  order = jnp.argsort(~key_mask, axis=-1, stable=True)
  lengths = jnp.sum(key_mask, axis=-1).astype(jnp.int32)
  take = lambda t: jnp.take_along_axis(t, order[:, :, None, None], axis=1)
  return lengths, jnp.argsort(order, axis=-1), [take(q), take(k), take(v)]


def _xla_attention(q, k, v, *, mask, scale):
  b, n, h, d = q.shape
  kh = k.shape[2]
  qg = q.reshape(b, n, kh, h // kh, d)
  logits = jnp.einsum("bnkgd,bmkd->bkgnm", qg, k, preferred_element_type=jnp.float32) * scale
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  out = jnp.einsum("bkgnm,bmkd->bnkgd", probs, v, preferred_element_type=jnp.float32)
  return out.reshape(b, n, h, d).astype(q.dtype)


def _mask_for_xla(b, n, m, *, key_mask, kv_lengths, causal, q_segment_ids, kv_segment_ids, mask):
  """A boolean mask broadcastable to [B, K, G, N, M], built from the compact descriptions."""
  full = None

  def combine(a, c):
    return c if a is None else jnp.logical_and(a, c)

  if key_mask is not None:
    full = combine(full, key_mask[:, None, None, None, :])
  if kv_lengths is not None:
    valid = jnp.arange(m)[None, :] < kv_lengths[:, None]
    full = combine(full, valid[:, None, None, None, :])
  if causal:
    # Queries are the last n positions of the m keys (prefill n == m, decode n < m).
    qpos = jnp.arange(n)[:, None] + (m - n)
    full = combine(full, (qpos >= jnp.arange(m)[None, :])[None, None, None])
  if q_segment_ids is not None:
    same = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
    full = combine(full, same[:, None, None])
  if mask is not None:  # [B, 1, N, M] -> [B, 1, 1, N, M]
    full = combine(full, mask[:, :, None])
  return full


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                          key_mask: jax.Array | None = None,
                          kv_lengths: jax.Array | None = None,
                          causal: bool = False,
                          q_segment_ids: jax.Array | None = None,
                          kv_segment_ids: jax.Array | None = None,
                          mask: jax.Array | None = None,
                          scale: float | None = None,
                          backend: str = "xla") -> jax.Array:
  """Multi-head attention with grouped KV heads.

  Args:
    q: [B, N, H, D]; k, v: [B, M, K, D] with H divisible by K.
    key_mask: [B, M] bool, True = attend.
    kv_lengths: [B] int, keys [0, len) are valid (a prefix key mask).
    causal: query i may see keys up to (M - N + i).
    q_segment_ids, kv_segment_ids: [B, N], [B, M]; attend only within equal ids.
    mask: [B, 1, N, M] bool for anything else (e.g. a KV-cache decode mask built once per call).
    scale: defaults to 1/sqrt(D).
    backend: one of BACKENDS.
  Returns:
    [B, N, H, D] in q's dtype.
  """
  if backend not in BACKENDS:
    raise ValueError(f"unknown attention backend {backend!r}; expected one of {BACKENDS}")
  b, n, h, d = q.shape
  m = k.shape[1]
  if h % k.shape[2]:
    raise ValueError(f"{h} query heads are not a multiple of {k.shape[2]} KV heads")
  if (q_segment_ids is None) != (kv_segment_ids is None):
    raise ValueError("q_segment_ids and kv_segment_ids must be given together")
  if mask is not None and mask.shape[1] != 1:
    raise ValueError("mask must be [B, 1, N, M] (shared by all heads)")
  scale = d ** -0.5 if scale is None else scale
  if backend == "auto":
    backend = resolve_backend(backend, q.dtype)
    if backend == "cudnn" and not _cudnn_applies(n, m, d, key_mask=key_mask, causal=causal,
                                                 segments=q_segment_ids is not None,
                                                 mask=mask is not None):
      backend = "xla"

  if backend == "cudnn":
    if q.dtype not in (jnp.bfloat16, jnp.float16):
      raise ValueError(f"the cudnn attention backend needs bf16/fp16 inputs, got {q.dtype}; "
                       "use dtype=bfloat16 or the xla backend")
    if q_segment_ids is not None or mask is not None:
      raise ValueError("the cudnn backend supports key masks, lengths and causal masks only")
    if key_mask is not None and causal:
      if n != m:
        raise ValueError("the cudnn backend cannot combine a causal mask with a key mask when "
                         "queries and keys differ in length (KV-cache decode); use the xla "
                         "backend there")
      lengths, inverse, (q, k, v) = compact_tokens(key_mask, q, k, v)
      out = jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=True,
                                         query_seq_lengths=lengths,
                                         key_value_seq_lengths=lengths, implementation="cudnn")
      return jnp.take_along_axis(out, inverse[:, :, None, None], axis=1)
    if key_mask is not None:
      kv_lengths_from_mask, (k, v) = compact_keys(key_mask, k, v)
      kv_lengths = (kv_lengths_from_mask if kv_lengths is None
                    else jnp.minimum(kv_lengths, kv_lengths_from_mask))
    q_lengths = None if kv_lengths is None else jnp.full((b,), n, jnp.int32)
    return jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=causal,
                                        query_seq_lengths=q_lengths,
                                        key_value_seq_lengths=kv_lengths,
                                        implementation="cudnn")
  if backend == "splash":
    from aomni_jax.layers import splash  # TPU-only dependency, imported on use
    return splash.splash_attention(q, k, v, key_mask=key_mask, kv_lengths=kv_lengths,
                                   causal=causal, q_segment_ids=q_segment_ids,
                                   kv_segment_ids=kv_segment_ids, scale=scale)
  full_mask = _mask_for_xla(b, n, m, key_mask=key_mask, kv_lengths=kv_lengths, causal=causal,
                            q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids,
                            mask=mask)
  return _xla_attention(q, k, v, mask=full_mask, scale=scale)
