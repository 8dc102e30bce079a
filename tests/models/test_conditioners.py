"""Conditioning heads: sync fixture, the bf16 omni path against PyTorch, masking, assembly."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from aomni_jax.config import MelConfig, ModelConfig, OmniConfig, SyncConfig, TranscriptConfig
from aomni_jax.models.conditioners import (ConditionerHeads, ConditionerInputs, MelHead,
                                           infill_mask, pack_qwen_features, rms_norm_bf16,
                                           round_to_bf16)
from aomni_jax.models.transcript import tokenize
from aomni_jax.parity import sync as sync_parity


def test_golden_sync_fixture(golden_dir):
  results = sync_parity.run(golden_dir / "sync")
  assert results and all(r.passed for r in results), [r.line() for r in results]


def _torch_bf16(x: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(x).bfloat16()


def test_round_to_bf16_matches_torch_and_survives_jit():
  x = np.random.default_rng(0).normal(size=4096).astype(np.float32) * 100
  ref = _torch_bf16(x).float().numpy()
  np.testing.assert_array_equal(round_to_bf16(jnp.asarray(x)), ref)
  np.testing.assert_array_equal(jax.jit(round_to_bf16)(jnp.asarray(x)), ref)


def test_bf16_rms_norm_is_bit_exact_against_torch_under_jit():
  x = _torch_bf16(np.random.default_rng(1).normal(size=(2, 64, 48)).astype(np.float32) * 3)
  ref = (x * torch.rsqrt(torch.mean(x ** 2, dim=-1, keepdim=True) + 1e-6)).float().numpy()
  ours = jax.jit(rms_norm_bf16)(jnp.asarray(x.float().numpy()))
  np.testing.assert_array_equal(ours, ref)


def test_pack_keeps_real_tokens_in_order_and_pads():
  hidden = np.arange(2 * 5 * 2, dtype=np.float32).reshape(2, 5, 2)
  mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # left padding, as the processor gives
  packed, out_mask = pack_qwen_features(jnp.asarray(hidden), jnp.asarray(mask), 6)
  np.testing.assert_array_equal(packed[0, :3], hidden[0, 2:])
  np.testing.assert_array_equal(packed[0, 3:], 0.0)
  np.testing.assert_array_equal(packed[1, :5], hidden[1])
  np.testing.assert_array_equal(out_mask, [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])


def test_pack_resamples_long_sequences_like_torch_interpolate():
  rng = np.random.default_rng(2)
  hidden = rng.normal(size=(2, 77, 16)).astype(np.float32)
  mask = np.ones((2, 77), np.int64)
  mask[1, :7] = 0  # item 1 has 70 real tokens, still longer than 64
  packed, out_mask = jax.jit(pack_qwen_features, static_argnums=2)(
      jnp.asarray(hidden), jnp.asarray(mask), 64)
  for b in range(2):
    real = _torch_bf16(hidden[b][mask[b] == 1]).T[None]
    ref = torch.nn.functional.interpolate(real, size=64, mode="linear", align_corners=False)
    np.testing.assert_array_equal(packed[b], ref[0].T.float().numpy())
  assert np.all(out_mask)


def test_infill_mask_only_touches_tts_items():
  log_mel = jnp.ones((3, 100, 4))
  out = np.asarray(infill_mask(log_mel, jnp.array([True, False, True]), jax.random.key(0),
                               0.7, 1.0))
  np.testing.assert_array_equal(out[1], 1.0)
  for b in (0, 2):
    zero_frames = np.flatnonzero(np.all(out[b] == 0.0, axis=-1))
    assert 70 <= len(zero_frames) < 100
    assert np.all(np.diff(zero_frames) == 1)  # one contiguous span


def test_mel_head_rejects_wrong_frame_count():
  head = nnx.eval_shape(lambda: MelHead(MelConfig(seq_len=4, out_dim=8), rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="1723"):
    head(jnp.zeros((1, 1000, 100)))


TINY = ModelConfig(
    transcript=TranscriptConfig(text_dim=8, conv_layers=1, seq_len=16, proj_seq_len=4, out_dim=8),
    mel=MelConfig(num_frames=9, seq_len=3, out_dim=8),
    sync=SyncConfig(input_dim=12, seq_len=10, out_seq_len=2, out_dim=8),
    omni=OmniConfig(feature_dim=6, pad_length=5, out_dim=8))


def _inputs(batch: int, **overrides) -> ConditionerInputs:
  ids, has_text = tokenize(["hello"] + [None] * (batch - 1), TINY.transcript.seq_len)
  fields = dict(qwen_hidden=jnp.ones((batch, 7, 6)), qwen_mask=jnp.ones((batch, 7), jnp.int32),
                transcript_ids=jnp.asarray(ids), has_transcript=jnp.asarray(has_text),
                sync_features=jnp.zeros((batch, 10, 12)), log_mel=jnp.zeros((batch, 9, 100)),
                is_tts=jnp.array([True] + [False] * (batch - 1)))
  fields.update(overrides)
  return ConditionerInputs(**fields)


@nnx.jit(static_argnames=("train",))
def _condition(heads, inputs, train=False, key=None):
  return heads(inputs, train=train, key=key)


@pytest.fixture(scope="module")
def heads():
  return nnx.jit(lambda: ConditionerHeads(TINY, rngs=nnx.Rngs(0)))()  # one compile, not eager


def test_heads_assemble_high_and_low_level_tokens(heads):
  cond = _condition(heads, _inputs(2))
  assert cond.cross_cond.shape == (2, 5 + 4, 8)
  assert cond.cross_mask.dtype == jnp.bool_
  np.testing.assert_array_equal(cond.cross_mask, True)  # 7 real tokens fill all 5 slots
  assert cond.global_cond.shape == (2, 2 + 3, 8)
  sync = nnx.jit(lambda m, x: m(x))(heads.sync, jnp.zeros((2, 10, 12)))
  np.testing.assert_allclose(cond.global_cond[:, :2], sync)


def test_heads_training_mask_needs_a_key_and_inputs_need_one_mel_source(heads):
  with pytest.raises(ValueError, match="needs a key"):
    heads(_inputs(1), train=True)
  with pytest.raises(ValueError, match="exactly one of waveform and log_mel"):
    heads(_inputs(1, waveform=jnp.zeros((1, 2048))))
  trained = _condition(heads, _inputs(1), train=True, key=jax.random.key(0))
  assert trained.global_cond.shape == (1, 5, 8)


def test_heads_take_a_waveform():
  cfg = dataclasses.replace(TINY, mel=dataclasses.replace(TINY.mel, num_frames=1 + 4096 // 256))
  heads = nnx.eval_shape(lambda: ConditionerHeads(cfg, rngs=nnx.Rngs(0)))
  cond = nnx.eval_shape(lambda m, x: m(x), heads,
                        _inputs(1, log_mel=None, waveform=jnp.zeros((1, 4096))))
  assert cond.global_cond.shape == (1, 5, 8)
