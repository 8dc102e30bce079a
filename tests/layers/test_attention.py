"""The attention backends agree with a plain softmax reference, for every mask description."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aomni_jax.layers.attention import compact_keys, dot_product_attention


def reference(q, k, v, allowed):
  """Dense float64 attention; `allowed` [B, N, M] bool."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  g = q.shape[2] // k.shape[2]
  k, v = np.repeat(k, g, axis=2), np.repeat(v, g, axis=2)
  logits = np.einsum("bnhd,bmhd->bhnm", q, k) / np.sqrt(q.shape[-1])
  logits = np.where(allowed[:, None], logits, -np.inf)
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  return np.einsum("bhnm,bmhd->bnhd", p, v)


@pytest.fixture(scope="module")
def qkv():
  ks = jax.random.split(jax.random.key(0), 3)
  b, n, m, h, kh, d = 2, 40, 56, 4, 2, 32
  return (jax.random.normal(ks[0], (b, n, h, d)), jax.random.normal(ks[1], (b, m, kh, d)),
          jax.random.normal(ks[2], (b, m, kh, d)))


def masks(n, m):
  key_mask = np.ones((2, m), bool)
  key_mask[0, 10:30] = False  # not a prefix: [valid, hole, valid]
  lengths = np.array([17, 56])
  causal = np.tril(np.ones((n, m), bool), k=m - n)
  seg_q = np.repeat(np.array([[1] * 20 + [2] * 20]), 2, 0)
  seg_kv = np.repeat(np.array([[1] * 30 + [2] * 26]), 2, 0)
  return {
      "key_mask": (dict(key_mask=key_mask), np.broadcast_to(key_mask[:, None], (2, n, m))),
      "kv_lengths": (dict(kv_lengths=lengths),
                     np.broadcast_to(np.arange(m)[None, None] < lengths[:, None, None],
                                     (2, n, m))),
      "causal": (dict(causal=True), np.broadcast_to(causal, (2, n, m))),
      "segments": (dict(q_segment_ids=seg_q, kv_segment_ids=seg_kv),
                   seg_q[:, :, None] == seg_kv[:, None, :]),
  }


@pytest.mark.parametrize("backend", ["xla", "splash"])
@pytest.mark.parametrize("case", ["key_mask", "kv_lengths", "causal", "segments"])
def test_backends_match_reference(qkv, backend, case):
  q, k, v = qkv
  kwargs, allowed = masks(q.shape[1], k.shape[1])[case]
  kwargs = {name: jnp.asarray(a) if not isinstance(a, bool) else a for name, a in kwargs.items()}
  out = dot_product_attention(q, k, v, backend=backend, **kwargs)
  np.testing.assert_allclose(out, reference(q, k, v, allowed), atol=2e-5, rtol=2e-5)


def test_compacting_keys_turns_any_key_mask_into_lengths(qkv):
  q, k, v = qkv
  key_mask = jnp.asarray(masks(q.shape[1], k.shape[1])["key_mask"][0]["key_mask"])
  lengths, (k2, v2) = compact_keys(key_mask, k, v)
  np.testing.assert_array_equal(lengths, [36, 56])
  np.testing.assert_allclose(dot_product_attention(q, k2, v2, kv_lengths=lengths),
                             dot_product_attention(q, k, v, key_mask=key_mask), atol=1e-5)


def test_joint_compaction_keeps_causal_self_attention_with_left_padding():
  """What the cudnn path does for a left-padded causal prompt, checked with the xla kernel."""
  from aomni_jax.layers.attention import compact_tokens
  ks = jax.random.split(jax.random.key(1), 3)
  q, k, v = (jax.random.normal(key, (2, 12, 2, 16)) for key in ks)
  key_mask = jnp.arange(12)[None, :] >= jnp.array([[5], [0]])  # left padding of 5 and 0
  ref = dot_product_attention(q, k, v, key_mask=key_mask, causal=True)
  lengths, inverse, (q2, k2, v2) = compact_tokens(key_mask, q, k, v)
  out = dot_product_attention(q2, k2, v2, kv_lengths=lengths, causal=True)
  out = jnp.take_along_axis(out, inverse[:, :, None, None], axis=1)
  valid = np.asarray(key_mask)
  np.testing.assert_allclose(np.asarray(out)[valid], np.asarray(ref)[valid], atol=1e-5)


def test_splash_gradients_match_xla(qkv):
  q, k, v = qkv
  key_mask = jnp.asarray(masks(q.shape[1], k.shape[1])["key_mask"][0]["key_mask"])
  loss = lambda backend: jax.grad(lambda q, k, v: jnp.sum(jnp.sin(dot_product_attention(
      q, k, v, key_mask=key_mask, backend=backend))), argnums=(0, 1, 2))(q, k, v)
  for a, b in zip(loss("splash"), loss("xla")):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_bad_arguments_are_named():
  q = jnp.zeros((1, 4, 3, 8))
  with pytest.raises(ValueError, match="KV heads"):
    dot_product_attention(q, jnp.zeros((1, 4, 2, 8)), jnp.zeros((1, 4, 2, 8)))
  with pytest.raises(ValueError, match="unknown attention backend"):
    dot_product_attention(q, q, q, backend="flash")
