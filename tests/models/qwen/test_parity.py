"""Parity with transformers' Qwen2_5OmniThinkerForConditionalGeneration (fp32, both tiny variants).

For every modality: all hidden states (relative to each state's max magnitude, real tokens only),
logits, tower outputs and the 3-D positions.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from aomni_jax.models.qwen_omni.processing import model_inputs
from tests.models.qwen import tiny

HIDDEN_RTOL = 1e-4  # the bound, relative to the state's max |value|

# Jitted entry points: compiling once is far cheaper on CPU than op-by-op dispatch.
_hidden_and_logits = nnx.jit(lambda m, x: (lambda hs: (hs, m.logits(hs[-1])))(m.hidden_states(x)))
_logits = nnx.jit(lambda m, x: m(x))
_features = nnx.jit(lambda m, x, layer_idx: m.features(x, layer_idx=layer_idx),
                    static_argnames="layer_idx")
_audio = nnx.jit(lambda m, x: m.audio(x))
_visual = nnx.jit(lambda m, x: m.visual(x))


def _rel(ours, ref, mask) -> float:
  ours, ref = np.asarray(ours)[mask], np.asarray(ref)[mask]
  return float(np.abs(ours - ref).max() / np.abs(ref).max())


def _check(thinker, batch: dict, use_audio_in_video: bool = False):
  inputs = model_inputs(batch, thinker.cfg, use_audio_in_video=use_audio_in_video)
  with torch.no_grad():
    ref = thinker.hf(**batch, output_hidden_states=True, use_audio_in_video=use_audio_in_video)
    ref_pos, ref_deltas = thinker.hf.model.get_rope_index(
        batch["input_ids"], batch.get("image_grid_thw"), batch.get("video_grid_thw"),
        batch["attention_mask"], use_audio_in_video,
        batch["feature_attention_mask"].sum(-1) if "feature_attention_mask" in batch else None,
        batch.get("video_second_per_grid"))
  np.testing.assert_array_equal(inputs.position_ids, ref_pos.numpy())
  mask = batch["attention_mask"].numpy().astype(bool)
  ours, logits = _hidden_and_logits(thinker.model, inputs)
  assert len(ours) == len(ref.hidden_states) == thinker.cfg.text.num_layers + 1
  errors = [_rel(a, b.numpy(), mask) for a, b in zip(ours, ref.hidden_states)]
  assert max(errors) <= HIDDEN_RTOL, errors
  assert _rel(logits, ref.logits.numpy(), mask) <= HIDDEN_RTOL
  return inputs


def test_text_batch_with_left_padding(thinker):
  texts = ["<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is this?<|im_end|>\n"
           "<|im_start|>assistant\n", "hi"]
  batch = dict(thinker.processor(text=texts, return_tensors="pt", padding=True))
  assert batch["attention_mask"][1, 0] == 0  # really left-padded
  inputs = _check(thinker, batch)
  with torch.no_grad():
    ref = thinker.hf(**batch).logits.numpy()
  assert _rel(_logits(thinker.model, inputs), ref, batch["attention_mask"].numpy() == 1) <= 1e-4


def test_audio_multi_chunk_and_partial(thinker):
  rng = np.random.default_rng(1)
  # 1.37 s: one partial chunk; 4.71 s: several chunks with a remainder (and a straddling pair).
  wavs = [0.1 * rng.standard_normal(int(16000 * s)).astype(np.float32) for s in (1.37, 4.71)]
  texts = ["say <|audio_bos|><|AUDIO|><|audio_eos|> now", "x<|audio_bos|><|AUDIO|><|audio_eos|>"]
  batch = dict(thinker.processor(text=texts, audio=wavs, return_tensors="pt", padding=True))
  inputs = _check(thinker, batch)
  with torch.no_grad():
    ref = thinker.hf.get_audio_features(batch["input_features"],
                                        batch["feature_attention_mask"]).last_hidden_state
  ours = np.asarray(_audio(thinker.model, inputs.audio))
  np.testing.assert_allclose(ours, ref.numpy(), rtol=0, atol=1e-5 * np.abs(ref.numpy()).max())


def test_image_with_partial_windows(thinker):
  from PIL import Image
  rng = np.random.default_rng(2)
  image = Image.fromarray(rng.integers(0, 255, (308, 420, 3), dtype=np.uint8))
  batch = dict(thinker.processor(text=["look <|vision_bos|><|IMAGE|><|vision_eos|> ok", "b"],
                                 images=[image], return_tensors="pt", padding=True))
  grid = batch["image_grid_thw"][0].tolist()
  assert (grid[1] // 2) % thinker.cfg.vision.merger_window  # the merged grid has edge windows
  _check(thinker, batch)


def test_video_two_clips(thinker):
  rng = np.random.default_rng(3)
  grids = [(2, 12, 16), (3, 10, 6)]
  texts = ["vid " + tiny.video_placeholder(grids[0], 1.0) + " end",
           "b" + tiny.video_placeholder(grids[1], 1.0)]
  batch = tiny.video_batch(thinker.processor, texts, grids, 1.0, rng)
  inputs = _check(thinker, batch)
  with torch.no_grad():
    ref = thinker.hf.get_video_features(batch["pixel_values_videos"],
                                        batch["video_grid_thw"]).pooler_output
  ref = torch.cat(ref).numpy()
  ours = np.asarray(_visual(thinker.model, inputs.video))
  np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


def test_audio_in_video(thinker):
  rng = np.random.default_rng(4)
  wav = [0.1 * rng.standard_normal(int(16000 * 5.1)).astype(np.float32)]
  grid = (5, 8, 12)
  text = ["x" + tiny.video_placeholder(grid, 1.2, audio_frames=int(np.ceil(len(wav[0]) / 160)))
          + "y"]
  _check(thinker, tiny.video_batch(thinker.processor, text, [grid], 1.2, rng, audio=wav),
         use_audio_in_video=True)


@pytest.mark.parametrize("layer_idx", [-2, -1, 0, 1])
def test_features_are_hf_hidden_states(thinker, layer_idx):
  texts = ["<|im_start|>user\nmake rain sounds<|im_end|>\n<|im_start|>assistant\n", "wind"]
  batch = dict(thinker.processor(text=texts, return_tensors="pt", padding=True))
  inputs = model_inputs(batch, thinker.cfg)
  with torch.no_grad():
    ref = thinker.hf(**batch, output_hidden_states=True).hidden_states[layer_idx].numpy()
  mask = batch["attention_mask"].numpy().astype(bool)
  assert _rel(_features(thinker.model, inputs, layer_idx), ref, mask) <= HIDDEN_RTOL


def test_features_run_only_the_needed_layers(thinker_a):
  texts = ["abc"]
  inputs = model_inputs(dict(thinker_a.processor(text=texts, return_tensors="pt")), thinker_a.cfg)
  n = thinker_a.cfg.text.num_layers
  for layer_idx, run in ((-2, n - 1), (1, 1)):
    jaxpr = jax.make_jaxpr(lambda: thinker_a.model.features(inputs, layer_idx=layer_idx))()
    lengths = [e.params["length"] for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]
    assert lengths == [run]  # one layer loop, over exactly the layers needed
