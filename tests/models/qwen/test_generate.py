"""Generation equals transformers' greedy `generate` (KV cache, rope deltas, padding, stopping)."""

from __future__ import annotations

import numpy as np
import torch

from aomni_jax.models.qwen_omni.generate import generate, sample_token
from aomni_jax.models.qwen_omni.processing import model_inputs


def _batch(thinker):
  rng = np.random.default_rng(5)
  wav = [0.1 * rng.standard_normal(int(16000 * 2.3)).astype(np.float32)]
  texts = ["hello world, how are", "hi<|audio_bos|><|AUDIO|><|audio_eos|>yo"]
  return dict(thinker.processor(text=texts, audio=wav, return_tensors="pt", padding=True))


def test_greedy_equals_transformers_with_padding_and_audio(thinker):
  batch = _batch(thinker)
  with torch.no_grad():
    ref = thinker.hf.generate(**batch, max_new_tokens=10, do_sample=False)
  ref = ref[:, batch["input_ids"].shape[1]:].numpy()
  ours = generate(thinker.model, model_inputs(batch, thinker.cfg), max_new_tokens=10)
  np.testing.assert_array_equal(ours[:, :ref.shape[1]], ref)


def test_stops_and_pads_like_transformers(thinker_a):
  batch = _batch(thinker_a)
  inputs = model_inputs(batch, thinker_a.cfg)
  free = generate(thinker_a.model, inputs, max_new_tokens=10)
  stop = int(free[0, 3])  # a token row 0 produces: it must stop there
  with torch.no_grad():
    ref = thinker_a.hf.generate(**batch, max_new_tokens=10, do_sample=False, eos_token_id=stop,
                                pad_token_id=thinker_a.cfg.pad_token_id)
  ref = ref[:, batch["input_ids"].shape[1]:].numpy()
  ours = generate(thinker_a.model, inputs, max_new_tokens=10, stop_ids=(stop,))
  np.testing.assert_array_equal(ours[:, :ref.shape[1]], ref)
  first_stop = int(np.argmax(ours[0] == stop))
  assert (ours[0, first_stop + 1:] == thinker_a.cfg.pad_token_id).all()


def test_top_p_keeps_only_the_nucleus():
  import jax
  logits = jax.numpy.log(jax.numpy.array([[0.5, 0.3, 0.15, 0.05]]))
  tokens = {int(sample_token(logits, jax.random.key(s), 1.0, 0.7)[0]) for s in range(64)}
  assert tokens == {0, 1}
  assert int(sample_token(logits, jax.random.key(0), 0.0, 1.0)[0]) == 0


def test_single_row_equals_transformers(thinker):
  """One row is decoded as two (MIN_DECODE_ROWS); the copy must not leak into the answer."""
  batch = dict(thinker.processor(text=["hello world, how are"], return_tensors="pt"))
  with torch.no_grad():
    ref = thinker.hf.generate(**batch, max_new_tokens=8, do_sample=False)
  ref = ref[:, batch["input_ids"].shape[1]:].numpy()
  ours = generate(thinker.model, model_inputs(batch, thinker.cfg), max_new_tokens=8)
  assert ours.shape == (1, 8)
  np.testing.assert_array_equal(ours[:, :ref.shape[1]], ref)
