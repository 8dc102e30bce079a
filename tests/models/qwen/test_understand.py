"""understand() and the aomni-understand CLI against transformers' greedy generation."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from aomni_jax.cli import understand as cli
from aomni_jax.models.qwen_omni import understand as understand_lib
from aomni_jax.models.qwen_omni.understand import Understander, build_prompt, understand


def _reference(thinker, question, audio):
  prompt = build_prompt(question, audio=True)
  batch = thinker.processor(text=[prompt], audio=[audio], return_tensors="pt", padding=True)
  with torch.no_grad():
    out = thinker.hf.generate(**batch, max_new_tokens=8, do_sample=False)
  return thinker.processor.batch_decode(out[:, batch["input_ids"].shape[1]:],
                                        skip_special_tokens=True)[0]


def test_understand_and_cli_print_the_transformers_answer(thinker_a, tmp_path, monkeypatch,
                                                          capsys):
  rng = np.random.default_rng(6)
  audio = 0.1 * rng.standard_normal(16000 * 2).astype(np.float32)
  expected = _reference(thinker_a, "What is it?", audio)
  model = Understander(thinker_a.model, thinker_a.processor)
  assert understand("What is it?", audio=audio, model=model, max_new_tokens=8) == expected
  # The CLI: a 32 kHz stereo file, resampled to 16 kHz mono; the processor comes from the fixture
  # (this CPU image cannot build transformers' video processor, see tiny.make_processor).
  path = tmp_path / "clip.wav"
  time = np.arange(64000) / 32000
  tone = (0.3 * np.sin(2 * np.pi * 440 * time)).astype(np.float32)
  soundfile.write(path, np.stack([tone, tone], axis=1), 32000)
  loaded = cli.load_audio(str(path))
  want = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
  assert loaded.shape == (32000,) and np.abs(loaded - want)[100:-100].max() < 1e-2
  monkeypatch.setattr(understand_lib, "load_processor", lambda _: thinker_a.processor)
  code = cli.main(["--model", thinker_a.directory, "--question", "What is it?", "--audio",
                   str(path), "--max-new-tokens", "8", "--dtype", "float32"])
  assert code == 0
  assert capsys.readouterr().out == model("What is it?", audio=loaded, max_new_tokens=8) + "\n"


def test_bad_inputs_are_named(thinker_a):
  model = Understander(thinker_a.model, thinker_a.processor)
  with pytest.raises(ValueError, match="audio must be a non-empty mono"):
    model("q", audio=np.zeros((2, 10), np.float32))
  with pytest.raises(ValueError, match="question must be"):
    model(" ")
  assert cli.main(["--model", "/nonexistent", "--question", "q"]) == 2
