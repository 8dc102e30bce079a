"""Synthetic mixtures: drawn SNR is met, stems sum to the mixture, loudness and determinism."""

import numpy as np
import pytest

from aomni_jax.audio import dsp
from aomni_jax.data import loader
from aomni_jax.data import records
from aomni_jax.data import synth
from tests.data.conftest import SHAPES, SYNTH, harmonic_tone, noise

RATE = SYNTH.rate


def measured_span_snr(stems: dict[str, np.ndarray]) -> float:
  """SNR over the samples where the event is present, computed from the stems alone."""
  present = np.flatnonzero(np.any(stems["event"] != 0, axis=0))
  span = slice(present[0], present[-1] + 1)
  event, background = stems["event"][:, span], stems["background"][:, span]
  return 10 * np.log10(np.mean(event.astype(np.float64)**2) /
                       np.mean(background.astype(np.float64)**2))


def make_mixture(seed: int):
  rng = np.random.default_rng(seed)
  return synth.mix_event(noise(1.3, seed), harmonic_tone(300, 0.7), rng, SYNTH)


@pytest.mark.parametrize("seed", range(6))
def test_measured_snr_matches_the_drawn_value(seed):
  stems, params = make_mixture(seed)
  assert 0.0 <= params["snr_db"] <= 3.0
  assert measured_span_snr(stems) == pytest.approx(params["snr_db"], abs=0.1)


def test_snr_survives_the_record_round_trip():
  stems, params = make_mixture(11)
  data = records.encode_record("x", stems, [], {}, RATE, "flac24")
  record = records.decode_record(data)
  decoded = {name: records.decode_stem(record, name) for name in stems}
  assert measured_span_snr(decoded) == pytest.approx(params["snr_db"], abs=0.1)


def test_drawn_parameters_cover_the_paper_ranges():
  params = [make_mixture(seed)[1] for seed in range(20)]
  semitones = [p["semitones"] for p in params]
  stretch = [p["stretch"] for p in params]
  assert -3 <= min(semitones) < -1 and 1 < max(semitones) <= 3
  assert 0.8 <= min(stretch) < 0.9 and 1.1 < max(stretch) <= 1.2


def test_event_is_pitch_shifted_and_stretched_as_drawn():
  event = harmonic_tone(300, 0.7)
  stems, params = synth.mix_event(np.zeros((2, RATE)) + 1e-3 * noise(1.0, 0), event,
                                  np.random.default_rng(5), SYNTH)
  assert params["event_s"] == pytest.approx(0.7 * params["stretch"], abs=2 / RATE)
  present = stems["event"][0, np.any(stems["event"] != 0, axis=0)]
  spectrum = np.abs(np.fft.rfft(present * np.hanning(len(present)), 1 << 20))
  freqs = np.fft.rfftfreq(1 << 20, 1 / RATE)
  band = (freqs > 150) & (freqs < 500)
  f0 = freqs[band][np.argmax(spectrum[band])]
  assert f0 / 300 == pytest.approx(2 ** (params["semitones"] / 12), rel=3e-3)


def test_mixture_is_loudness_normalised_and_peak_safe():
  stems, _ = make_mixture(2)
  mixture = stems["background"] + stems["event"]
  assert np.abs(mixture).max() <= SYNTH.peak + 1e-6
  assert dsp.loudness_lufs(mixture, RATE) == pytest.approx(SYNTH.target_lufs, abs=0.1)


def test_edit_examples_satisfy_mixture_equals_residual_plus_target():
  item = synth.mixture_item("m", noise(1.3, 0), harmonic_tone(300, 0.5), "rain", "beep",
                            np.random.default_rng(0), SYNTH)
  data = records.encode_record(item.item_id, item.stems, item.examples, item.meta, RATE, "flac16")
  decoder = loader.ExampleDecoder(SHAPES)
  by_task = {ex["task"]: decoder((data, slot, slot)) for slot, ex in enumerate(item.examples)}
  mixture = by_task["add"]["target_audio"]
  residual = by_task["remove"]["target_audio"]
  target = by_task["extract"]["target_audio"]
  np.testing.assert_allclose(mixture, residual + target, rtol=0, atol=1e-6)
  assert np.abs(target).max() > 0.01 and np.abs(residual).max() > 0.01
  # The remove/extract input is the mixture; the add input is the residual (mono, first frames).
  np.testing.assert_allclose(by_task["remove"]["mel_audio"],
                             mixture.mean(axis=0)[:SHAPES.mel_frames], atol=1e-6)
  np.testing.assert_allclose(by_task["add"]["mel_audio"],
                             residual.mean(axis=0)[:SHAPES.mel_frames], atol=1e-6)
  assert by_task["add"]["instruction"] == "Add the sound of 'beep' to the input audio."
  assert by_task["t2a"]["mel_audio"].max() == 0  # generation tasks have no input audio


def test_same_seed_same_item_other_seed_differs():
  first, again, other = (make_mixture(seed) for seed in (4, 4, 5))
  for name in first[0]:
    np.testing.assert_array_equal(first[0][name], again[0][name])
  assert first[1] == again[1] and first[1] != other[1]


def test_single_speech_item_keeps_transcript_and_starts_at_zero():
  speech = harmonic_tone(180, 0.5)
  item = synth.single_item("s", speech, "speech", "speech", "", "Hello there.",
                           np.random.default_rng(0), SYNTH)
  example, = item.examples
  assert example["task"] == "tts" and example["transcript"] == "Hello there."
  assert example["instruction"] == ""
  assert item.stems["target"].shape == (2, SYNTH.frames)
  assert np.abs(item.stems["target"][:, :100]).max() > 0


def test_voice_clone_item_is_laid_out_as_inference_uses_it():
  prompt, speech = harmonic_tone(180, 0.6), harmonic_tone(220, 0.4)
  item = synth.voice_clone_item("c", prompt, speech, "Please hold", "Goodbye.", "Allison", SYNTH)
  example, = item.examples
  assert example["task"] == "tts" and example["transcript"] == "Please hold. Goodbye."
  data = records.encode_record(item.item_id, item.stems, item.examples, item.meta, RATE, "wav_f32")
  decoded = loader.ExampleDecoder(SHAPES)((data, 0, 0))
  p, s = int(0.6 * RATE), int(0.4 * RATE)
  # The mel path gets the prompt alone, from sample 0, zero after it (Gradio's padding) ...
  assert np.abs(decoded["mel_audio"][:p]).max() > 0.01 and not decoded["mel_audio"][p:].any()
  # ... and the target is the prompt followed by the new utterance, then silence.
  target = decoded["target_audio"]
  np.testing.assert_allclose(target[:, :p].mean(axis=0), decoded["mel_audio"][:p], atol=1e-6)
  assert np.abs(target[:, p:p + s]).max() > 0.01 and not target[:, p + s:].any()
  assert item.meta["speaker"] == "Allison"


def test_a_mixture_can_hold_several_events_and_edit_one():
  others = ((harmonic_tone(600, 0.4), "whistle"), (noise(0.3, 7, amplitude=0.3), "burst"))
  item = synth.mixture_item("m", noise(1.3, 0), harmonic_tone(300, 0.5), "rain", "beep",
                            np.random.default_rng(0), SYNTH, others)
  single = synth.mixture_item("m", noise(1.3, 0), harmonic_tone(300, 0.5), "rain", "beep",
                              np.random.default_rng(0), SYNTH)
  assert item.meta["labels"] == ["beep", "whistle", "burst", "rain"]
  assert len(item.meta["other_events"]) == 2
  t2a = [ex for ex in item.examples if ex["task"] == "t2a"][0]
  assert "beep and whistle and burst with rain" in t2a["instruction"]
  # The other events live in the residual: the whistle's band (600 Hz ± 3 semitones) gains energy
  # there over the one-event residual's.
  def band_energy(residual):
    spectrum = np.abs(np.fft.rfft(residual.mean(axis=0))) ** 2
    freqs = np.fft.rfftfreq(residual.shape[-1], 1 / RATE)
    return spectrum[(freqs > 480) & (freqs < 730)].sum() / spectrum.sum()
  assert band_energy(item.stems["background"]) > 3 * band_energy(single.stems["background"])
