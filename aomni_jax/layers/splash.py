"""TPU splash attention (Pallas) behind `dot_product_attention(..., backend="splash")`.

Splash works on 128-multiples of sequence length, takes no key mask and no scale, and is not
partitioned by GSPMD. So this wrapper
  * pads queries and keys to multiples of 128 and expresses key masks, lengths, padding and
    segments as segment ids (a key whose id matches no query id is never attended),
  * scales q, repeats KV heads for grouped-query attention,
  * runs under `shard_map` over the batch (and heads over `tensor`) when a mesh is set, so each
    device runs the kernel on its own shard. Callers trace under `parallel.mesh_context`:
    without a mesh the Mosaic kernel cannot be partitioned over several chips.
The kernel is the Mosaic TPU custom call when the target (the mesh's devices) is a TPU, also in
an AOT compile on a CPU host; on other targets it runs in Pallas interpret mode, which is how the
tests check it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm
from jax.sharding import PartitionSpec as P

LANES = 128
_NEVER = -1  # the segment id of keys that no query may see


def _round_up(n: int, m: int) -> int:
  return (n + m - 1) // m * m


def _kernel(heads: int, n: int, m: int, causal_offset: int | None, interpret: bool):
  """The splash kernel for one padded shape (masks are static).

  Built per trace, not cached: a kernel built inside one trace (e.g. a fori_loop body) holds
  that trace's values in its mask info and must not be reused by another.

  `causal_offset`: query i sees keys ≤ i + offset (None: no causal mask). Padding is appended,
  so the unpadded offset M − N stays right for every real query.
  """
  base = (sm.FullMask((n, m)) if causal_offset is None
          else sm.CausalMask((n, m), offset=causal_offset))
  block = lambda length: next(b for b in (512, 256, 128) if length % b == 0)
  block_q, block_kv = block(n), block(m)
  sizes = sk.BlockSizes(block_q=block_q, block_kv=block_kv, block_kv_compute=block_kv,
                        block_q_dkv=block_q, block_kv_dkv=block_kv,
                        block_kv_dkv_compute=block_kv, block_q_dq=block_q, block_kv_dq=block_kv)
  return sk.make_splash_mha(sm.MultiHeadMask([base] * heads), head_shards=1, q_seq_shards=1,
                            block_sizes=sizes, interpret=interpret)


def _segment_ids(b, n, m, n_pad, m_pad, key_mask, kv_lengths, q_ids, kv_ids):
  q = jnp.ones((b, n), jnp.int32) if q_ids is None else q_ids.astype(jnp.int32)
  kv = jnp.ones((b, m), jnp.int32) if kv_ids is None else kv_ids.astype(jnp.int32)
  valid = jnp.ones((b, m), bool)
  if key_mask is not None:
    valid &= key_mask
  if kv_lengths is not None:
    valid &= jnp.arange(m)[None, :] < kv_lengths[:, None]
  kv = jnp.where(valid, kv, _NEVER)
  # Padded query rows copy the first query's id (they are sliced off; a row with no visible key
  # could produce NaNs whose zero cotangents would still poison gradients).
  q = jnp.pad(q, ((0, 0), (0, n_pad - n)), mode="edge")
  kv = jnp.pad(kv, ((0, 0), (0, m_pad - m)), constant_values=_NEVER)
  return sk.SegmentIds(q=q, kv=kv)


def _local(q, k, v, q_seg, kv_seg, *, causal_offset, interpret):
  """Splash on local arrays: q [B, H, Np, D], k/v [B, H, Mp, D], segment ids [B, Np]/[B, Mp]."""
  kernel = _kernel(q.shape[1], q.shape[2], k.shape[2], causal_offset, interpret)
  return jax.vmap(lambda q, k, v, a, b: kernel(q, k, v, segment_ids=sk.SegmentIds(a, b)))(
      q, k, v, q_seg, kv_seg)


def _mesh_specs(mesh, heads: int):
  """Batch over every data-parallel axis present, heads over `tensor` when it divides them."""
  names = [a for a in ("data", "fsdp") if a in mesh.axis_names and mesh.shape[a] > 1]
  batch = tuple(names) if names else None
  head = ("tensor" if "tensor" in mesh.axis_names and mesh.shape["tensor"] > 1
          and heads % mesh.shape["tensor"] == 0 else None)
  return P(batch, head, None, None), P(batch, None)


def splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, key_mask=None, kv_lengths=None,
                     causal: bool = False, q_segment_ids=None, kv_segment_ids=None,
                     scale: float, interpret: bool | None = None) -> jax.Array:
  """Same contract as `dot_product_attention`: q [B, N, H, D], k/v [B, M, K, D] → [B, N, H, D]."""
  b, n, h, d = q.shape
  m = k.shape[1]
  if interpret is None:
    from aomni_jax.layers.attention import target_platform  # pylint: disable=g-import-not-at-top
    interpret = target_platform() != "tpu"
  n_pad, m_pad = _round_up(n, LANES), _round_up(m, LANES)
  seg = _segment_ids(b, n, m, n_pad, m_pad, key_mask, kv_lengths, q_segment_ids, kv_segment_ids)
  groups = h // k.shape[2]
  to_heads_major = lambda x, length: jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0),
                                                 (0, 0))).transpose(0, 2, 1, 3)
  qh = to_heads_major(q * jnp.asarray(scale, q.dtype), n_pad)
  kh = to_heads_major(jnp.repeat(k, groups, axis=2), m_pad)
  vh = to_heads_major(jnp.repeat(v, groups, axis=2), m_pad)
  run = functools.partial(_local, causal_offset=(m - n) if causal else None,
                          interpret=interpret)
  mesh = jax.sharding.get_abstract_mesh()
  if not mesh.empty and mesh.size > 1:
    act, ids = _mesh_specs(mesh, h)
    run = jax.shard_map(run, mesh=mesh, in_specs=(act, act, act, ids, ids), out_specs=act,
                        check_vma=False)
  out = run(qh, kh, vh, seg.q, seg.kv)
  return out.transpose(0, 2, 1, 3)[:, :n].astype(q.dtype)
