"""Transcript encoder: the golden fixture and the empty-feature batch rule."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aomni_jax.config import TranscriptConfig
from aomni_jax.layers.norms import rms_norm
from aomni_jax.models.transcript import TranscriptEncoder, tokenize
from aomni_jax.parity import transcript as transcript_parity

TINY = TranscriptConfig(text_dim=8, conv_layers=1, seq_len=12, proj_seq_len=4, out_dim=6)


def test_golden_transcript_fixture(golden_dir):
  results = transcript_parity.run(golden_dir / "transcript")
  assert any(r.name == "batch_a_output" for r in results)
  failed = [r.line() for r in results if not r.passed]
  assert not failed, failed


_call = nnx.jit(lambda encoder, ids, has_text: encoder(ids, has_text))


@nnx.jit
def _build(empty_feature):
  encoder = TranscriptEncoder(TINY, rngs=nnx.Rngs(0))  # one compile instead of eager init ops
  encoder.empty_feature[...] = empty_feature
  return encoder


@pytest.fixture(scope="module")
def encoder():
  return _build(jnp.arange(24, dtype=jnp.float32).reshape(4, 6) + 1.0)


def test_all_none_batch_returns_the_raw_empty_feature(encoder):
  ids, has_text = tokenize([None, None], TINY.seq_len)
  out = _call(encoder, jnp.asarray(ids), jnp.asarray(has_text))
  np.testing.assert_array_equal(out, np.broadcast_to(encoder.empty_feature[...], (2, 4, 6)))


def test_mixed_batch_normalises_the_empty_rows(encoder):
  ids, has_text = tokenize(["hi", None], TINY.seq_len)
  out = np.asarray(_call(encoder, jnp.asarray(ids), jnp.asarray(has_text)))
  np.testing.assert_allclose(out[1], rms_norm(encoder.empty_feature[...], eps=1e-6), rtol=1e-6)
  np.testing.assert_allclose(np.mean(out[0] ** 2, axis=-1), 1.0, rtol=1e-4)


def test_long_text_is_truncated_and_filler_rows_do_not_leak(encoder):
  ids, _ = tokenize(["a" * 40, "a"], TINY.seq_len)
  assert ids.shape == (2, TINY.seq_len) and np.all(ids[0] > 0) and np.all(ids[1, 1:] == 0)
  feats = np.asarray(nnx.jit(lambda e, i: e.text_features(i))(encoder, jnp.asarray(ids)))
  assert np.all(feats[1, 1:] == 0.0)


def test_wrong_length_ids(encoder):
  with pytest.raises(ValueError, match="expected seq_len 12"):
    encoder(jnp.zeros((1, 5), jnp.int32), jnp.ones((1,), bool))


def test_identity_sequence_projection_when_lengths_match():
  cfg = dataclasses.replace(TINY, proj_seq_len=TINY.seq_len)
  encoder = nnx.eval_shape(lambda: TranscriptEncoder(cfg, rngs=nnx.Rngs(0)))
  assert encoder.seq_proj is None
  ids, has_text = tokenize(["hey"], cfg.seq_len)
  out = nnx.eval_shape(lambda e: e(jnp.asarray(ids), jnp.asarray(has_text)), encoder)
  assert out.shape == (1, cfg.seq_len, cfg.out_dim)


def test_grn_gradient_is_finite_for_all_zero_channels():
  """An item without transcript has all-zero rows; its GRN gradient must not be NaN."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from aomni_jax.models.transcript import global_response_norm
  x = jnp.zeros((2, 5, 4)).at[0].set(jax.random.normal(jax.random.key(0), (5, 4)))
  grad = jax.grad(lambda x: jnp.sum(global_response_norm(x, jnp.ones(4), jnp.zeros(4)) ** 2))(x)
  assert np.all(np.isfinite(np.asarray(grad)))
