"""WER / CER with Moonshine base-en on real read speech (Asterisk prompts, one human speaker)."""

import numpy as np
import pytest

from aomni_jax.evaluation import asr
from aomni_jax.evaluation import fidelity
from tests.evaluation.conftest import load_mono

# data_eval.md measured 4.3 % WER for this ASR on 40 of these prompts; the issue asks < 10 %.
WER_CEILING = 0.10


def test_normalize_lowercases_and_drops_punctuation():
  assert asr.normalize("Hello, World!  It's 'fine'.") == "hello world it's fine"


def test_error_counts_are_pooled_over_words():
  first = asr.errors("the cat sat", "the cat sat")
  second = asr.errors("a dog ran home", "a dog ran")
  assert (first.word_errors, first.words, second.word_errors, second.words) == (0, 3, 1, 4)
  assert asr.pooled_rates([first, second])[0] == pytest.approx(1 / 7)
  with pytest.raises(fidelity.MetricInputError, match="empty reference"):
    asr.errors("...", "anything")


def test_wer_on_real_speech_is_below_ten_percent(real_clips):
  prompts = [c for c in real_clips if c.source == "asterisk-core-sounds-en"
             and 6 <= len(c.transcript.split()) <= 12][:4]
  texts = asr.transcribe([load_mono(c, asr.SAMPLE_RATE) for c in prompts])
  wer, cer = asr.pooled_rates([asr.errors(c.transcript, t) for c, t in zip(prompts, texts)])
  print(f"WER {wer:.3f} CER {cer:.3f}", list(zip([c.transcript for c in prompts], texts)))
  assert wer < WER_CEILING and cer < WER_CEILING


def test_noise_is_not_transcribed_as_the_prompt(real_clips):
  prompt = next(c for c in real_clips if c.source == "asterisk-core-sounds-en")
  noise = 0.1 * np.random.default_rng(0).standard_normal(3 * asr.SAMPLE_RATE).astype(np.float32)
  assert asr.pooled_rates([asr.errors(prompt.transcript, asr.transcribe([noise])[0])])[0] >= 0.8


def test_clips_outside_the_asr_range_raise():
  with pytest.raises(fidelity.MetricInputError, match="outside"):
    asr.transcribe([np.zeros(100, np.float32)])
