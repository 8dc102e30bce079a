"""The in-memory API that `aomni-train` calls on validation samples."""

import numpy as np
import pytest

from aomni_jax.evaluation import evaluate
from aomni_jax.evaluation import fidelity
from tests.evaluation.conftest import load_mono

RATE = 16000
CONFIG = evaluate.EvalConfig(item_resamples=100, set_resamples=3)


@pytest.fixture(scope="module")
def remove_samples(real_clips):
  """Remove-task samples from real clips: faithful outputs (target + faint noise) and lazy ones
  (the input returned unchanged)."""
  events = [c for c in real_clips if c.kind == "event"][:4]
  backgrounds = [c for c in real_clips if c.kind == "background"][:4]
  rng = np.random.default_rng(0)
  faithful, lazy = [], []
  for index, (event, background) in enumerate(zip(events, backgrounds)):
    bg, ev = (np.resize(load_mono(c, RATE), 2 * RATE) for c in (background, event))
    common = dict(task="remove", rate=RATE, reference=bg, input=bg + ev, residual=ev)
    faithful.append(evaluate.Sample(id=f"good-{index}", audio=bg + 0.01 * rng.standard_normal(
        len(bg)), **common))
    lazy.append(evaluate.Sample(id=f"lazy-{index}", audio=bg + ev, **common))
  return faithful, lazy


def test_faithful_edits_beat_lazy_ones_on_every_edit_metric(remove_samples, yamnet_model):
  """Also checks the TensorBoard tags the training loop logs (eval/<task>/<metric>)."""
  evaluator = evaluate.Evaluator(CONFIG, sound_backbone=yamnet_model)
  faithful, lazy = ({tag.rsplit("/", 1)[-1]: value
                     for tag, value in evaluate.scalars(evaluator.evaluate(samples)).items()}
                    for samples in remove_samples)
  assert faithful["si_sdr"] > lazy["si_sdr"] + 10
  assert faithful["lsd"] < lazy["lsd"] and faithful["mel_distance"] < lazy["mel_distance"]
  assert faithful["leakage_si_sdr"] < lazy["leakage_si_sdr"] - 10
  assert lazy["change_mel_distance"] == pytest.approx(0.0, abs=1e-9)
  assert faithful["change_mel_distance"] > 0.05
  assert {"fad", "kid", "si_sdr"} <= set(faithful) and all(np.isfinite(list(faithful.values())))


def test_a_silent_output_is_counted_not_nan(remove_samples, yamnet_model):
  faithful, _ = remove_samples
  silent = evaluate.Sample(**{**faithful[0].__dict__, "id": "silent",
                              "audio": np.zeros_like(faithful[0].audio)})
  metrics = evaluate.Evaluator(CONFIG, sound_backbone=yamnet_model).evaluate(
      faithful[1:] + [silent])
  si_sdr = next(m for m in metrics if m.name == "si_sdr")
  assert si_sdr.n == len(faithful) - 1 and si_sdr.skipped == {"estimate silent": 1}
  assert all(np.isfinite(m.value) for m in metrics)


@pytest.mark.parametrize("change,problem", [({"task": "sing"}, "unknown task"),
                                            ({"audio": np.full(RATE, np.nan)}, "NaN"),
                                            ({"audio": np.zeros(0)}, "empty"),
                                            ({"rate": 1000}, "sample rate")])
def test_unusable_samples_raise_a_clear_error(remove_samples, change, problem):
  sample = evaluate.Sample(**{**remove_samples[0][0].__dict__, **change})
  with pytest.raises(fidelity.MetricInputError, match=problem):
    evaluate.Evaluator(CONFIG, sound_backbone=object()).evaluate([sample])


def test_default_sound_backbone_is_the_jax_port():
  assert evaluate.Evaluator().sound_backbone.name.startswith("YAMNet-float")
  with pytest.raises(fidelity.MetricInputError, match="unknown YAMNet backend"):
    _ = evaluate.Evaluator(evaluate.EvalConfig(yamnet="tflite")).sound_backbone


def test_tts_reports_wer_next_to_the_asr_wer_on_the_real_reference(real_clips):
  prompt = min((c for c in real_clips if c.source == "asterisk-core-sounds-en"
                and len(c.transcript.split()) >= 5), key=lambda c: len(c.transcript))
  speech = load_mono(prompt, RATE)
  muffled = speech + 0.3 * np.std(speech) * np.random.default_rng(0).standard_normal(len(speech))
  sample = evaluate.Sample(id="tts-0", task="tts", audio=muffled, rate=RATE, reference=speech,
                           transcript=prompt.transcript)
  metrics = {m.name: m for m in evaluate.Evaluator(CONFIG).evaluate([sample])}
  assert set(metrics) == {"wer", "cer", "reference_wer", "reference_cer"}
  assert metrics["reference_wer"].value <= metrics["wer"].value + 1e-9
  assert metrics["wer"].backbone.startswith("moonshine") and metrics["wer"].n == 1
