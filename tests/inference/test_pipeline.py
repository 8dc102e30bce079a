"""End-to-end pipeline: golden stages on one case, and the input preparation's bad-input rules."""

import pathlib
import re

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from aomni_jax.config import MelConfig, load_config
from aomni_jax.models.conditioners import ConditionerHeads
from aomni_jax.models.dit import DiffusionTransformer
from aomni_jax.models.qwen_omni.config import ThinkerConfig
from aomni_jax.models.vae import OobleckVAE
from aomni_jax.parity import pipeline as pipeline_parity
from aomni_jax.inference.pipeline import (Pipeline, QwenPrompt, Request, build_inputs, postprocess_int16,
                                prepare_audio, qwen_prompt, thinker_features)

CFG = MelConfig()


def _failures(results):
  return [r.line() for r in results if not r.passed]


def test_golden_pipeline_tts_case(golden_dir):
  # Voice prompt (Gradio padding), transcript, bf16 omni path, DiT + CFG, Euler, VAE, int16.
  results = pipeline_parity.run(golden_dir / "pipeline", cases=("tts",))
  names = {r.name for r in results}
  assert {"tts_decoded_waveform (end to end)", "tts_cond_speech_prompt"} <= names
  assert not _failures(results), _failures(results)


@pytest.mark.slow
def test_golden_pipeline_other_cases(golden_dir):
  results = pipeline_parity.run(golden_dir / "pipeline", cases=("t2a", "edit", "v2a"))
  assert len({r.name.split("_")[0] for r in results}) == 3
  assert not _failures(results), _failures(results)


def test_audio_is_mixed_down_cropped_and_padded():
  stereo = np.stack([np.full(CFG.num_samples + 500, 0.25, np.float32),
                     np.full(CFG.num_samples + 500, 0.75, np.float32)])
  out = prepare_audio(stereo, CFG.sample_rate, CFG, name="x")
  assert out.shape == (CFG.num_samples,) and np.allclose(out, 0.5)
  short = prepare_audio(np.ones(1000, np.float32), CFG.sample_rate, CFG, name="x")
  assert short[:1000].min() == 1.0 and not short[1000:].any()


def test_voice_prompt_keeps_its_last_six_seconds():
  voice = np.concatenate([np.zeros(CFG.sample_rate, np.float32),
                          np.ones(6 * CFG.sample_rate, np.float32)])
  out = prepare_audio(voice, CFG.sample_rate, CFG, name="voice", keep_last_seconds=6.0)
  assert out[:6 * CFG.sample_rate].min() == 1.0 and not out[6 * CFG.sample_rate:].any()


def test_other_sample_rates_are_resampled():
  one_second = np.sin(np.linspace(0, 200 * np.pi, 16000)).astype(np.float32)
  out = prepare_audio(one_second, 16000, CFG, name="x")
  energy = np.flatnonzero(np.abs(out) > 1e-3)
  assert abs(energy[-1] - CFG.sample_rate) < 50  # 1 s at 44.1 kHz, then zero padding


@pytest.mark.parametrize("audio,rate,match", [
    (np.zeros(0, np.float32), 44100, "empty"),
    (np.array([0.0, np.nan], np.float32), 44100, "NaN or infinite"),
    (np.zeros((1, 2, 3), np.float32), 44100, r"\[samples\] or \[channels, samples\]"),
    (np.zeros((1000, 2), np.float32), 44100, "not \\[samples, channels\\]"),
    (np.zeros(100, np.int16), 44100, "float samples"),
    (np.zeros(100, np.float32), None, "sample_rate"),
])
def test_bad_audio_is_rejected_by_name(audio, rate, match):
  with pytest.raises(ValueError, match="edit source: .*" + match):
    prepare_audio(audio, rate, CFG, name="edit source")


def _abstract_pipeline() -> Pipeline:
  cfg = load_config(str(pathlib.Path(__file__).parents[2] / "configs" / "tiny.py"))
  m = cfg.model
  return Pipeline(cfg, *(nnx.eval_shape(lambda c=c, a=a: c(a, rngs=nnx.Rngs(0)))
                         for c, a in ((ConditionerHeads, m), (DiffusionTransformer, m.dit),
                                      (OobleckVAE, m.vae))))


def test_generate_checks_noise_and_sync_features():
  pipe = _abstract_pipeline()
  requests = [Request(task="T2A", prompt="rain")]
  m = pipe.cfg.model
  expected = (1, m.sample_size // m.vae.downsampling_ratio, m.vae.latent_dim)
  with pytest.raises(ValueError, match=re.escape(f"noise: expected shape {expected}")):
    pipe.generate(requests, (np.zeros((1, 4, 64)), np.ones((1, 4))), noise=np.zeros((1, 8, 8)))
  with pytest.raises(ValueError, match="give either noise or a PRNG key"):
    pipe.generate(requests, (np.zeros((1, 4, 64)), np.ones((1, 4))))
  with pytest.raises(ValueError, match="sync_features: expected \\(16, 32\\)"):
    build_inputs([Request(task="V2A", sync_features=np.zeros((3, 32)))], np.zeros((1, 4, 64)),
                 np.ones((1, 4)), pipe.cfg.model)
  with pytest.raises(ValueError, match="takes no audio input"):
    build_inputs([Request(task="T2A", audio=np.zeros(10), sample_rate=44100)],
                 np.zeros((1, 4, 64)), np.ones((1, 4)), pipe.cfg.model)


def test_requests_are_validated():
  with pytest.raises(ValueError, match="task 'Mix'"):
    Request(task="Mix")
  with pytest.raises(ValueError, match="needs the source audio"):
    Request(task="Add", prompt="dog")
  assert "<|VIDEO|>" in qwen_prompt(Request(task="V2M")).text


def test_postprocess_matches_the_api_rule():
  audio = np.zeros((2, 3, 2), np.float32)
  audio[0, 0, 0], audio[1, 2, 1] = 0.5, -0.25
  out = postprocess_int16(audio)
  assert out.shape == (2, 6) and out.dtype == np.int16
  assert out[0, 0] == 32767 and out[1, 5] == -16383  # truncation toward zero
  assert not postprocess_int16(np.zeros((1, 4, 2), np.float32)).any()  # silence: no 0/0


class _FakeThinker(nnx.Module):
  """Stands in for models.qwen_omni.Thinker: features = token id + layer index."""

  def __init__(self):
    self.cfg = ThinkerConfig()
    self.scale = nnx.Param(jnp.ones(()))

  def features(self, inputs, layer_idx):
    return inputs.input_ids[..., None].astype(jnp.float32) * self.scale[...] + layer_idx


def test_thinker_features_follow_the_official_processor_call():
  calls = []

  def processor(text, audio, images, videos, return_tensors, padding):
    calls.append((text, videos, padding))
    ids = np.array([[0, 5, 6], [7, 8, 9]], np.int64)  # left padding on item 0
    return {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64)}

  features = thinker_features(_FakeThinker(), processor)
  video = np.ones((2, 3, 4, 4), np.uint8)
  hidden, mask = features([QwenPrompt("a"), QwenPrompt("b", video)])
  np.testing.assert_array_equal(mask, [[0, 1, 1], [1, 1, 1]])
  np.testing.assert_array_equal(hidden[..., 0], [[-2, 3, 4], [5, 6, 7]])
  assert calls[0][0] == ["a", "b"] and calls[0][2] is True
  assert len(calls[0][1]) == 1 and calls[0][1][0] is video
  features([QwenPrompt("x", np.zeros_like(video))])
  assert calls[1][1] is None  # an all-zero video is dropped, as the official conditioner does
